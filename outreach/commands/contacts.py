"""`outreach contacts import FILE` and `outreach contacts list`."""

from __future__ import annotations

import getpass
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import typer
from sqlalchemy.exc import SQLAlchemyError

from campaigns.contacts import (
    ContactRow,
    ImportFileError,
    RejectedRow,
    RejectsWriter,
    default_rejects_path,
    open_contacts,
)
from outreach.context import check_text_options, fail, get_ctx
from outreach.logsetup import log_to_file
from results.limits import COMMUNITY_MAX
from results.masking import mask_national_id, mask_phone, mask_text
from results.residents import import_residents, list_residents, record_audit
from results.store import describe_db_error

app = typer.Typer(help="Resident lists: import CSV/XLSX files, list stored residents.", no_args_is_help=True)

EXIT_STORE_FAILED = 1
log = logging.getLogger(__name__)


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
    check_text_options(("--community", community, COMMUNITY_MAX))
    try:
        source = open_contacts(file, sheet=sheet)
    except ImportFileError as exc:
        fail(str(exc))
        return
    try:
        rejects_path = rejects if rejects is not None else default_rejects_path(file)
        is_xlsx = rejects_path.suffix.lower() in (".xlsx", ".xlsm")
        if is_xlsx != (source.kind == "xlsx"):
            fail(f"--rejects {rejects_path}: the rejects file has the input's format, name it .{source.kind}")
        if rejects_path.resolve() == file.resolve():
            fail(f"--rejects {rejects_path}: must not be the input file")
        if not rejects_path.parent.is_dir():  # fail before reading the file, not after a long import
            fail(
                f"cannot write the rejects file {rejects_path}: the folder {rejects_path.parent} does not exist; "
                "choose another place with --rejects (nothing was imported)"
            )
        store = get_ctx(ctx).store(create=True)
        writer = RejectsWriter(rejects_path, source)

        def rows() -> Iterator[ContactRow]:
            for item in source.records():
                if isinstance(item, RejectedRow):
                    writer.write(item)
                else:
                    yield item

        bar: AbstractContextManager[Callable[[int], None] | None] = (
            _Bar(source.total_hint, enabled=True) if sys.stdout.isatty() and not as_json else nullcontext(None)
        )
        try:
            with bar as progress:
                summary = import_residents(
                    store,
                    rows(),
                    source_file=str(file),
                    default_community=(community or "").strip(),
                    actor=_actor(),
                    # the rejects file is completed inside the import's transaction: if it cannot be
                    # written, nothing is imported
                    rejected=writer.finish,
                    progress=progress,
                )
        except ImportFileError as exc:
            writer.discard()
            fail(f"{exc} (nothing was imported)")
            return
        except SQLAlchemyError as exc:
            writer.discard()
            log_to_file(log, f"import of {file} failed", exc)  # the log file keeps the details, masked
            fail(f"import of {file} failed, the store is unchanged: {describe_db_error(exc)}", code=EXIT_STORE_FAILED)
            return
        except OSError as exc:  # writing the rejects file (a read-only folder, a full disk) or reading the input
            writer.discard()
            if exc.filename is not None and Path(exc.filename) == writer.temp_path:
                fail(
                    f"cannot write the rejects file {rejects_path}: {exc.strerror or exc}; "
                    "choose another place with --rejects (nothing was imported)"
                )
            fail(f"{exc.filename or file}: {exc.strerror or exc} (nothing was imported)")
            return
        except BaseException:
            writer.discard()
            raise
        try:
            written = writer.commit()
        except OSError as exc:
            fail(
                f"the residents were imported, but the rejects file could not be moved to {rejects_path}: "
                f"{exc.strerror or exc}; the rejected rows are in {writer.temp_path}",
                code=EXIT_STORE_FAILED,
            )
            return
    finally:
        source.close()
    multi_sheet = source.sheet_count > 1
    if as_json:
        result: dict[str, Any] = {
            "imported": summary.imported,
            "updated": summary.updated,
            "rejected": summary.rejected,
            "rejects_file": str(written) if written is not None else None,
        }
        if multi_sheet:
            result["sheets_read"] = source.sheets_read
            result["sheets_skipped"] = [name for name, _ in source.sheets_skipped]
        print(json.dumps(result, ensure_ascii=False))
        return
    if multi_sheet:
        skipped = "、".join(f"{name}（{why}）" for name, why in source.sheets_skipped)
        not_chosen = source.sheet_count - len(source.sheets_read) - len(source.sheets_skipped)
        print(f"读取的工作表：{'、'.join(source.sheets_read)}"
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
