"""Exports of a campaign's screenings, attempts and escalations as CSV or XLSX, with Chinese column
headers. Phones and national IDs are masked unless `unmasked=True`, which is written to the audit log.
Times are shown in the campaign's time zone (named in the header), so calling windows can be checked.

Files are written to a temporary name beside the target and renamed at the end: an export that fails
half-way never leaves a half-written file under the requested name.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from sqlalchemy import select

from common.atomic import atomic_file
from common.masking import mask_national_id, mask_phone, mask_text
from results.cells import formula_safe
from results.models import AuditLog, CallAttempt, Campaign, Escalation, Resident, ScreeningRecord
from results.store import Store

log = logging.getLogger(__name__)

WHAT = ("screenings", "attempts", "escalations")
FORMATS = ("csv", "xlsx")

FIELD_LABELS = {
    "identity_confirmed": "身份确认",
    "has_symptoms": "有无症状",
    "temperature": "体温（℃）",
    "traveled": "14天内离开本市",
    "travel_place": "去过的城市",
    "contact_case": "接触确诊/疑似病例",
    "second_test_done": "已做第二次核酸",
}
OUTCOME_LABELS = {
    "dialing": "呼叫中", "answered": "已接听", "no_answer": "无人接听", "busy": "占线", "congestion": "关机/网络忙",
    "failed": "呼叫失败", "invalid_number": "空号", "hung_up_early": "接听后挂断", "interrupted": "中断",
    "completed": "完成", "callback_requested": "要求回电", "human_requested": "要求人工", "wrong_number": "打错电话",
    "opted_out": "拒绝再呼", "no_response": "接听无应答", "not_understood": "无法识别", "hung_up": "中途挂断",
    "transferred": "已转人工",
}
RISK_LABELS = {"none": "无", "flagged": "需关注", "high": "高风险"}
NOT_SCREENED = "未筛查"  # risk column when no risk question was answered (not "无": nothing is known)
NOT_FINISHED = "无（筛查未完成）"
# Q.850 cause codes of the "16 NORMAL_CLEARING" form (simulated network, older rows), in words.
HANGUP_WORDS = {
    1: "空号", 3: "无法接通", 16: "正常挂断", 17: "用户忙", 18: "无人接听", 19: "无人接听", 20: "关机或不在服务区",
    21: "呼叫被拒绝", 22: "号码已改号", 27: "终端故障", 28: "号码格式错误", 31: "呼叫失败", 34: "线路忙",
    38: "网络故障", 41: "临时故障", 42: "交换设备拥塞", 102: "超时未接通", 127: "网络故障",
}
_CAUSE_CODE_RE = re.compile(r"^(\d{1,3})(?:\s+[A-Z_]+)?$")
_FIELD_IN_REASON_RE = re.compile(r"(?<=：)([a-z][a-z0-9_]*)")
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
ESCALATION_LABELS = {
    "flagged": "风险关注", "high_risk": "高风险", "human_requested": "要求人工", "callback_requested": "要求回电",
    "unreachable": "无法联系", "uncertain": "回答不确定",
    "opted_out": "已退订（不再联系）",
    "refused": "已退订（不再联系）",  # stores from before opt-outs had one kind on every channel
    "sms_undeliverable": "短信未送达", "sms_reply": "短信回复待阅",
}
STATUS_LABELS = {"open": "待处理", "in_progress": "处理中", "closed": "已关闭"}


class ExportError(ValueError):
    """The export cannot be made; the message names the campaign, option or file."""


@dataclass(frozen=True, slots=True)
class Table:
    title: str
    headers: list[str]
    rows: Iterable[Sequence[Any]]
    #: numbers inside free text (names, addresses, reasons) are masked by the writers
    mask_free_text: bool = False


def _masked_rows(table: Table) -> Iterable[Sequence[Any]]:
    if not table.mask_free_text:
        return table.rows
    return ([mask_text(v) if isinstance(v, str) else v for v in row] for row in table.rows)


def _fmt_time(value: dt.datetime | None, tz: ZoneInfo) -> dt.datetime | None:
    """A real date-time in the campaign's local time (naive, whole seconds): a date cell in XLSX (filters
    and sorting work), `2026-12-01 09:30:00` in CSV."""
    if not value:
        return None
    return value.astimezone(tz).replace(tzinfo=None, microsecond=0)


def _fmt_value(value: Any) -> Any:
    """An answer for a cell: yes/no in words, numbers stay numbers (temperatures sum and filter)."""
    if value is True:
        return "是"
    if value is False:
        return "否"
    if value is None:
        return ""
    if value == "family":
        return "家属代答"
    if isinstance(value, float):
        return round(value, 1)
    if isinstance(value, int):
        return value
    if isinstance(value, list):
        return "、".join(str(v) for v in value)
    return str(value)


def _answer_cell(answer: Mapping[str, Any]) -> Any:
    value = _fmt_value(answer.get("value"))
    if answer.get("uncertain") and isinstance(value, str):
        return value + "（不确定）" if value else "不确定"
    return value  # a number stays a number; its doubt is in the 回答不确定项 column


def _risk_label(risk: str, outcome: str | None, answers: Mapping[str, Any]) -> str:
    """Risk in words; 未筛查 when no question beyond the identity was answered (nothing is known)."""
    if risk != "none":
        return RISK_LABELS.get(risk, risk)
    if not any(k != "identity_confirmed" for k in answers):
        return NOT_SCREENED
    return RISK_LABELS["none"] if outcome == "completed" else NOT_FINISHED


def hangup_words(cause: str | None) -> str:
    """A hang-up cause in words: "16 NORMAL_CLEARING" -> 正常挂断（Q.850 16）; text already in words is kept."""
    if not cause:
        return ""
    m = _CAUSE_CODE_RE.match(cause.strip())
    if m is not None:
        code = int(m.group(1))
        return f"{HANGUP_WORDS.get(code, '其他原因')}（Q.850 {code}）"
    if cause.startswith("internal error"):
        return "系统内部错误"
    return cause


def reason_words(reason: str) -> str:
    """An escalation reason with any record field name in it replaced by its Chinese label
    (回答不确定：second_test_done -> 回答不确定：已做第二次核酸)."""
    return _FIELD_IN_REASON_RE.sub(lambda m: FIELD_LABELS.get(m.group(1), m.group(1)), reason)


def _campaign(store: Store, name: str) -> tuple[int, ZoneInfo]:
    with store.session() as s:
        row = s.execute(select(Campaign.id, Campaign.timezone).where(Campaign.name == name)).first()
    if row is None:
        raise ExportError(f"no campaign named {name!r}")
    return int(row[0]), ZoneInfo(row[1])


def _phone(p: str | None, unmasked: bool) -> str:
    return (p or "") if unmasked else mask_phone(p)


def _nid(p: str | None, unmasked: bool) -> str:
    return (p or "") if unmasked else mask_national_id(p)


def screenings_table(store: Store, campaign_id: int, tz: ZoneInfo, *, unmasked: bool = False) -> Table:
    with store.session() as s:
        seen: dict[str, None] = dict.fromkeys(FIELD_LABELS)
        extra: dict[str, None] = {}
        for (answers,) in s.execute(select(ScreeningRecord.answers).where(ScreeningRecord.campaign_id == campaign_id)):
            for k in answers or {}:
                if k not in seen:
                    extra[k] = None
    fields = [*FIELD_LABELS, *sorted(extra)]
    tzname = tz.key
    headers = ["记录编号", "姓名", "手机号", "身份证号", "社区", "地址", f"通话时间（{tzname}）", "第几次呼叫",
               "对话结果", "风险等级", "风险原因", *[FIELD_LABELS.get(f, f) for f in fields], "回答不确定项",
               "需提醒第二次核酸", "约定回电时间", "短信状态"]

    def rows() -> Iterator[list[Any]]:
        from results.sms import sms_state_by_resident

        with store.session() as s:
            ids = list(s.scalars(select(ScreeningRecord.resident_id).where(ScreeningRecord.campaign_id == campaign_id)
                                 .distinct()))
            texts = sms_state_by_resident(s, ids)
            q = (
                select(ScreeningRecord, Resident, CallAttempt.started_at, CallAttempt.attempt_no)
                .join(Resident, Resident.id == ScreeningRecord.resident_id)
                .join(CallAttempt, CallAttempt.id == ScreeningRecord.attempt_id)
                .where(ScreeningRecord.campaign_id == campaign_id)
                .order_by(ScreeningRecord.id)
                .execution_options(yield_per=2000)
            )
            for rec, res, started, attempt_no in s.execute(q):
                answers = rec.answers or {}
                yield [
                    rec.id, res.name, _phone(res.phone, unmasked), _nid(res.national_id, unmasked), res.community,
                    res.address, _fmt_time(started, tz), attempt_no, OUTCOME_LABELS.get(rec.outcome, rec.outcome),
                    _risk_label(rec.risk_level, rec.outcome, answers), "；".join(rec.reasons or []),
                    *[_answer_cell(answers[f]) if f in answers else "" for f in fields],
                    "、".join(FIELD_LABELS.get(u, u) for u in rec.uncertain or []),
                    "是" if rec.reminder_needed else "否", _fmt_time(rec.callback_at, tz), texts.get(res.id, ""),
                ]

    return Table("筛查记录", headers, rows())


def attempts_table(store: Store, campaign_id: int, tz: ZoneInfo, *, unmasked: bool = False) -> Table:
    tzname = tz.key
    headers = ["呼叫编号", "通道编号", "姓名", "手机号", "社区", "第几次呼叫", f"开始时间（{tzname}）",
               f"接听时间（{tzname}）", f"结束时间（{tzname}）", "时长（秒）", "呼叫结果", "对话结果", "挂断原因", "工作节点"]

    def rows() -> Iterator[list[Any]]:
        with store.session() as s:
            q = (
                select(CallAttempt, Resident.name, Resident.phone, Resident.community)
                .join(Resident, Resident.id == CallAttempt.resident_id)
                .where(CallAttempt.campaign_id == campaign_id)
                .order_by(CallAttempt.started_at, CallAttempt.id)
                .execution_options(yield_per=5000)
            )
            for a, name, phone, community in s.execute(q):
                yield [
                    a.id, a.channel_id, name, _phone(phone, unmasked), community, a.attempt_no,
                    _fmt_time(a.started_at, tz), _fmt_time(a.answered_at, tz), _fmt_time(a.ended_at, tz),
                    None if a.duration_s is None else round(float(a.duration_s), 1), OUTCOME_LABELS.get(a.outcome, a.outcome),
                    OUTCOME_LABELS.get(a.dialog_outcome or "", a.dialog_outcome or ""), hangup_words(a.hangup_cause),
                    a.worker,
                ]

    return Table("呼叫记录", headers, rows())


ESCALATION_HEADERS = ["编号", "类型", "优先级", "状态", "社区", "姓名", "手机号", "身份证号", "地址", "原因",
                      "约定/截止时间", "创建时间", "筛查记录编号", "回答摘要", "最近一次呼叫", "短信状态"]


def _answers_summary(answers: dict[str, Any] | None) -> str:
    parts = []
    for f, a in (answers or {}).items():
        if isinstance(a, dict) and "value" in a:
            parts.append(f"{FIELD_LABELS.get(f, f)}：{_fmt_value(a.get('value'))}" + ("（不确定）" if a.get("uncertain") else ""))
    return "；".join(parts)


def _escalation_rows(store: Store, campaign_id: int | None, tz: ZoneInfo, unmasked: bool,
                     community: str | None = None, *, only_open: bool = False) -> Iterator[list[Any]]:
    """Most urgent first (priority 1 before 3), with the evidence: the screening's answers, the last
    call attempt, the state of the resident's texts."""
    from results.sms import last_attempt_by_resident, sms_state_by_resident

    with store.session() as s:
        q = (
            select(Escalation, Resident, ScreeningRecord.answers)
            .join(Resident, Resident.id == Escalation.resident_id)
            .outerjoin(ScreeningRecord, ScreeningRecord.id == Escalation.record_id)
            .order_by(Escalation.community, Escalation.priority, Escalation.id)
        )
        if campaign_id is not None:
            q = q.where(Escalation.campaign_id == campaign_id)
        if community is not None:
            q = q.where(Escalation.community == community)
        if only_open:
            q = q.where(Escalation.status != "closed")
        rows = s.execute(q).all()
        ids = list({res.id for _, res, _ in rows})
        last = last_attempt_by_resident(s, campaign_id, ids)
        texts = sms_state_by_resident(s, ids)
        for e, res, answers in rows:
            a = last.get(res.id)
            attempt = ""
            if a is not None:
                shown = a.dialog_outcome if a.outcome == "answered" and a.dialog_outcome else a.outcome
                attempt = f"{_fmt_time(a.started_at, tz)} 第{a.attempt_no}次 {OUTCOME_LABELS.get(shown, shown)}"
            yield [
                e.id, ESCALATION_LABELS.get(e.kind, e.kind), e.priority, STATUS_LABELS.get(e.status, e.status),
                e.community, res.name, _phone(res.phone, unmasked), _nid(res.national_id, unmasked), res.address,
                "；".join(reason_words(str(r)) for r in e.reasons or []), _fmt_time(e.due_at, tz),
                _fmt_time(e.created_at, tz), e.record_id,
                _answers_summary(answers), attempt, texts.get(res.id, ""),
            ]


def escalation_tables(store: Store, campaign_id: int | None, tz: ZoneInfo, *, unmasked: bool = False,
                      per_community: bool = True, only: Sequence[str] | None = None,
                      only_open: bool = False) -> list[Table]:
    """Escalations (of one campaign, or all), one table per community (XLSX sheets) or one table with
    every community; `only`: just these communities (a community worker's export)."""
    with store.session() as s:
        q = select(Escalation.community).distinct()
        if campaign_id is not None:
            q = q.where(Escalation.campaign_id == campaign_id)
        if only_open:
            q = q.where(Escalation.status != "closed")
        communities = sorted({c for (c,) in s.execute(q)})
    if only is not None:
        communities = [c for c in communities if c in set(only)]
    if not per_community:
        if only is None:
            return [Table("上报名单", ESCALATION_HEADERS,
                          _escalation_rows(store, campaign_id, tz, unmasked, only_open=only_open))]
        return [Table("上报名单", ESCALATION_HEADERS,
                      (row for c in communities
                       for row in _escalation_rows(store, campaign_id, tz, unmasked, c, only_open=only_open)))]
    if not communities:
        return [Table("上报名单", ESCALATION_HEADERS, [])]
    return [
        Table(c or "未填社区", ESCALATION_HEADERS,
              _escalation_rows(store, campaign_id, tz, unmasked, c, only_open=only_open))
        for c in communities
    ]


# ----------------------------------------------------------------------------- writers


def format_for(out: Path, fmt: str | None) -> str:
    """The export format: `--format` when given (the file's extension must agree), else the extension.

    Raises ExportError for an extension that is neither .csv nor .xlsx or one that contradicts --format.
    """
    suffix = out.suffix.lower().lstrip(".")
    if fmt is not None and fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if suffix not in FORMATS:
        shown = f".{suffix}" if suffix else "no extension"
        want = f".{fmt}" if fmt else ".csv or .xlsx"
        raise ExportError(f"--out {out}: the file name has {shown}; name it {want}")
    if fmt is not None and suffix != fmt:
        raise ExportError(f"--out {out}: the name says .{suffix} but --format is {fmt}; make them agree")
    return suffix


def _check_target(out: Path) -> Path:
    out = out.expanduser()
    if out.is_dir():
        raise ExportError(f"--out {out} is a directory; give a file name")
    if not out.parent.is_dir():
        raise ExportError(f"--out {out}: the folder {out.parent} does not exist; create it first")
    return out


@contextmanager
def _published(out: Path, before_publish: Callable[[], None] | None) -> Iterator[BinaryIO]:
    """A binary file that appears under `out` only once it is complete (common.atomic: a kill -9 leaves
    nothing behind). `before_publish` runs after the data is written and before the file appears (if it
    raises, no file appears)."""
    with atomic_file(_check_target(out), before_publish=before_publish) as f:
        yield f


def write_csv(out: Path, table: Table, *, before_publish: Callable[[int], None] | None = None) -> int:
    """UTF-8 with a BOM, so Excel opens the Chinese headers correctly; every cell formula-safe.
    `before_publish(rows)` runs after the data is written and before the file appears under its name
    (if it raises, no file appears)."""
    n = 0

    def hook() -> None:
        if before_publish is not None:
            before_publish(n)

    with _published(out, hook) as f:
        text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
        w = csv.writer(text)
        w.writerow([formula_safe(h) for h in table.headers])
        for row in _masked_rows(table):
            w.writerow([formula_safe(v) for v in row])
            n += 1
        text.flush()
        text.detach()
    return n


_BAD_SHEET = re.compile(r"[\[\]:*?/\\]")


def _sheet_name(title: str, used: set[str]) -> str:
    base = _BAD_SHEET.sub("_", title)[:31] or "Sheet"
    name, i = base, 2
    while name in used:
        suffix = f"_{i}"
        name, i = base[: 31 - len(suffix)] + suffix, i + 1
    used.add(name)
    return name


def _column_width(header: str) -> float:
    """A sensible width: times and reasons wide, short flags narrow (Chinese characters count double)."""
    if "时间" in header:
        return 20.0
    if "原因" in header or "地址" in header:
        return 36.0
    return float(min(max(10, 2 * len(header) + 2), 24))


def _layout(ws: Any, headers: Sequence[str]) -> None:
    """Before the first row: column widths and a frozen header row."""
    from openpyxl.utils import get_column_letter

    for i, h in enumerate(headers, 1):
        ws.column_dimensions[get_column_letter(i)].width = _column_width(str(h))
    ws.freeze_panes = "A2"


def _autofilter(ws: Any, headers: Sequence[str], rows: int) -> None:
    from openpyxl.utils import get_column_letter

    if headers:
        ws.auto_filter.ref = f"A1:{get_column_letter(len(headers))}{rows + 1}"


def _xlsx_row(ws: Any, row: Sequence[Any]) -> list[Any]:
    """Cells for one row. Text that starts with "=" stays text: openpyxl would store it as a formula
    (a resident list cell like `=HYPERLINK(...)` must not become a live formula in an export)."""
    out: list[Any] = []
    for v in row:
        if isinstance(v, dt.datetime):
            cell = WriteOnlyCell(ws, value=v)
            cell.number_format = DATETIME_FORMAT
            out.append(cell)
            continue
        if isinstance(v, str) and v.startswith("="):
            cell = WriteOnlyCell(ws, value=v)
            cell.data_type = "s"
            out.append(cell)
        else:
            out.append(v)
    return out


def write_xlsx(out: Path, tables: Sequence[Table], *, before_publish: Callable[[int], None] | None = None) -> int:
    """One sheet per table; `before_publish` as in write_csv."""
    n = 0

    def hook() -> None:
        if before_publish is not None:
            before_publish(n)

    with _published(out, hook) as f:
        wb = Workbook(write_only=True)
        used: set[str] = set()
        for t in tables:
            ws = wb.create_sheet(_sheet_name(t.title, used))
            _layout(ws, t.headers)
            ws.append(t.headers)
            rows = 0
            for row in _masked_rows(t):
                ws.append(_xlsx_row(ws, row))
                rows += 1
            n += rows
            _autofilter(ws, t.headers, rows)
        wb.save(f)
    return n


def _write(store: Store, tables: Sequence[Table], *, fmt: str, out: Path, unmasked: bool, actor: str,
           details: dict[str, Any]) -> int:
    def audit_unmasked(n: int) -> None:
        # Recorded before the unmasked file appears: there is never an unmasked export without its audit row.
        with store.session() as s:
            s.add(AuditLog(
                action="export.unmasked", actor=actor or os.environ.get("USER", ""),
                details={**details, "format": fmt, "file": str(out.expanduser().absolute()), "rows": n},
            ))

    hook = audit_unmasked if unmasked else None
    if not unmasked:  # numbers inside names, addresses and reasons go through the masker too
        tables = [dataclasses.replace(t, mask_free_text=True) for t in tables]
    try:
        if fmt == "csv":
            return write_csv(out, tables[0], before_publish=hook)
        return write_xlsx(out, tables, before_publish=hook)
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}") from exc


def export_escalations(
    store: Store,
    *,
    campaign: str | None,
    fmt: str | None,
    out: Path,
    unmasked: bool = False,
    only_open: bool = True,
    actor: str = "",
    timezone: str = "Asia/Shanghai",
) -> int:
    """`outreach escalations export`: every community's list (XLSX: one sheet each), most urgent first."""
    _check_target(out)
    fmt = format_for(out, fmt)
    if campaign is not None:
        campaign_id: int | None
        campaign_id, tz = _campaign(store, campaign)
    else:
        campaign_id, tz = None, ZoneInfo(timezone)
    tables = escalation_tables(store, campaign_id, tz, unmasked=unmasked, per_community=fmt == "xlsx",
                               only_open=only_open)
    n = _write(store, tables, fmt=fmt, out=out, unmasked=unmasked, actor=actor,
               details={"campaign": campaign or "*", "what": "escalations"})
    log.info("exported %d escalations (%s) to %s", n, campaign or "all campaigns", out)
    return n


def export(
    store: Store,
    *,
    campaign: str,
    what: str,
    fmt: str | None,
    out: Path,
    unmasked: bool = False,
    actor: str = "",
    communities: Sequence[str] | None = None,
) -> int:
    """Write one export file; returns the number of data rows. `communities`: escalations of only these.

    Raises:
        ExportError: unknown campaign, `what` or format, or an unusable output path.
    """
    if what not in WHAT:
        raise ExportError(f"--what {what!r}: choose one of {', '.join(WHAT)}")
    _check_target(out)
    fmt = format_for(out, fmt)
    campaign_id, tz = _campaign(store, campaign)
    if what == "screenings":
        tables = [screenings_table(store, campaign_id, tz, unmasked=unmasked)]
    elif what == "attempts":
        tables = [attempts_table(store, campaign_id, tz, unmasked=unmasked)]
    else:
        tables = escalation_tables(store, campaign_id, tz, unmasked=unmasked, per_community=fmt == "xlsx",
                                   only=communities)

    n = _write(store, tables, fmt=fmt, out=out, unmasked=unmasked, actor=actor,
               details={"campaign": campaign, "what": what,
                        **({"communities": list(communities)} if communities is not None else {})})
    log.info("exported %d %s rows of campaign %s to %s", n, what, campaign, out)
    return n
