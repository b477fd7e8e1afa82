"""The export use case: a campaign's screenings, attempts or escalations as CSV or XLSX. Phones and IDs
are masked unless asked for; an unmasked export is written to the audit log before the file appears."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from outreach.services import ServiceError
from results.exports import FORMATS, WHAT, ExportError, export
from results.store import Store

WHAT_ZH = {"screenings": "筛查记录", "attempts": "呼叫记录", "escalations": "上报名单"}


def check_export(what: str, fmt: str | None) -> None:
    """`fmt` None: the format comes from the output file's extension."""
    if what not in WHAT:
        raise ServiceError(f"--what {what!r}: choose one of {', '.join(WHAT)}", zh=f"不支持的导出内容：{what}")
    if fmt is not None and fmt not in FORMATS:
        raise ServiceError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}", zh=f"不支持的文件格式：{fmt}")


def export_campaign(
    store: Store, *, campaign: str, what: str, fmt: str | None, out: Path, unmasked: bool = False, actor: str,
    communities: Sequence[str] | None = None,
) -> int:
    """Write one export file; returns its number of data rows. `communities` limits an escalation export
    to those communities (a worker's scope)."""
    check_export(what, fmt)
    if communities is not None and what != "escalations":
        raise ServiceError(f"only escalations can be exported per community, not {what}",
                           zh="社区工作人员只能导出本社区的上报名单")
    try:
        return export(store, campaign=campaign, what=what, fmt=fmt, out=out, unmasked=unmasked, actor=actor,
                      communities=communities)
    except ExportError as exc:
        raise ServiceError(str(exc), zh=f"导出失败：{exc}") from exc
