"""`outreach contacts import FILE` and `outreach contacts list`."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from common.masking import mask_national_id, mask_phone, mask_text
from outreach.context import check_text_options, fail, get_ctx
from outreach.services import ServiceError
from outreach.services.imports import import_file
from results.limits import COMMUNITY_MAX
from results.residents import list_residents, record_audit

app = typer.Typer(help="Resident lists: import CSV/XLSX files, list stored residents.", no_args_is_help=True)

def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


class _Bar:
    """A rich progress bar on a terminal; nothing otherwise."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None
        self.total = total

    def __enter__(self) -> Callable[[int], None] | None:
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("导入中"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
        )
        self._progress.start()
        self._task = self._progress.add_task("import", total=self.total)

        def update(done: int) -> None:
            self._progress.update(self._task, completed=done)

        return update

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="Resident list: .csv (UTF-8, UTF-8 with BOM, GBK/GB18030) or .xlsx."),
    community: str | None = typer.Option(
        None, "--community", help="Community of new residents whose row names none."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: imported, updated, rejected, rejects_file."),
    rejects: Path | None = typer.Option(
        None, "--rejects", help="Where rejected rows go (default: <name>.rejects.<ext> beside FILE)."
    ),
    sheet: str | None = typer.Option(
        None, "--sheet", help="Only this worksheet of an .xlsx (default: every sheet with a phone column)."
    ),
) -> None:
    """Import residents from FILE; rows are merged by phone, bad rows go to a rejects file. All or nothing."""
    use_bar = sys.stdout.isatty() and not as_json
    try:
        app_ctx = get_ctx(ctx)
        result = import_file(
            lambda: app_ctx.store(create=True), file, community=community or "", rejects=rejects, actor=_actor(),
            progress=(lambda total: _Bar(total, enabled=True)) if use_bar else None, sheet=sheet,
        )
    except ServiceError as exc:
        fail(str(exc), code=exc.code)
        return
    summary, written = result.summary, result.rejects_file
    multi_sheet = result.sheet_count > 1
    if as_json:
        out: dict[str, Any] = {
            "imported": summary.imported,
            "updated": summary.updated,
            "rejected": summary.rejected,
            "rejects_file": str(written) if written is not None else None,
        }
        if multi_sheet:
            out["sheets_read"] = list(result.sheets_read)
            out["sheets_skipped"] = [name for name, _ in result.sheets_skipped]
        print(json.dumps(out, ensure_ascii=False))
        return
    if multi_sheet:
        skipped = "、".join(f"{name}（{why}）" for name, why in result.sheets_skipped)
        not_chosen = result.sheet_count - len(result.sheets_read) - len(result.sheets_skipped)
        print(f"读取的工作表：{'、'.join(result.sheets_read)}"
              + (f"；跳过：{skipped}" if skipped else "")
              + (f"；未选择的工作表 {not_chosen} 个（--sheet）" if not_chosen else ""))
    print(
        f"导入完成：新增 {summary.imported} 人，更新 {summary.updated} 人，"
        f"文件内重复合并 {summary.duplicates} 行，拒绝 {summary.rejected} 行"
    )
    if written is not None:
        print(f"被拒绝的行及原因已写入：{written}")


_LIST_COLUMNS = [
    ("id", "编号"), ("name", "姓名"), ("phone", "手机号"), ("community", "社区"), ("address", "地址"),
    ("national_id", "身份证号"), ("arrival_date", "返回日期"), ("tags", "标签"), ("note", "备注"),
]


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    community: str | None = typer.Option(None, "--community", help="Only this community's residents."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object {count, residents}."),
    unmasked: bool = typer.Option(False, "--unmasked", help="Show phone and ID numbers in clear (audit-logged)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many residents."),
) -> None:
    """Show stored residents; phone and ID numbers are masked unless --unmasked."""
    check_text_options(("--community", community, COMMUNITY_MAX))
    store = get_ctx(ctx).store()
    residents = list_residents(store, community=community, limit=limit)
    if unmasked:
        record_audit(
            store, "residents.list_unmasked", actor=_actor(),
            details={"community": community, "count": len(residents)},
        )
    # free text (a 备注 like 其他号码：139...) passes through the same masker as the numbers
    text: Callable[[str], str] = (lambda v: v) if unmasked else mask_text
    out: list[dict[str, Any]] = []
    for r in residents:
        out.append({
            "id": r.id,
            "name": text(r.name),
            "phone": r.phone if unmasked else mask_phone(r.phone),
            "community": text(r.community),
            "address": text(r.address),
            "national_id": (r.national_id if unmasked else mask_national_id(r.national_id)) or None,
            "arrival_date": r.arrival_date.isoformat() if r.arrival_date else None,
            "tags": [text(str(t)) for t in r.tags or []],
            "note": text(r.note),
        })
    if as_json:
        print(json.dumps({"count": len(out), "residents": out}, ensure_ascii=False))
        return
    if not out:
        print("没有居民记录" + (f"（社区：{community}）" if community else ""))
        return
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*(label for _, label in _LIST_COLUMNS))
        for row in out:
            table.add_row(*(_cell(row[key]) for key, _ in _LIST_COLUMNS))
        Console().print(table)
    else:
        print("\t".join(label for _, label in _LIST_COLUMNS))
        for row in out:
            print("\t".join(_cell(row[key]) for key, _ in _LIST_COLUMNS))
    print(f"共 {len(out)} 人")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "、".join(str(v) for v in value)
    return str(value).replace("\t", " ").replace("\n", " ")
