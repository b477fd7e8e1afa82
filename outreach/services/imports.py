"""The resident import use case: one file, all or nothing, rejected rows written to a rejects file in the
input's format inside the import's transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from campaigns.contacts import (
    ContactRow,
    ImportFileError,
    RejectedRow,
    RejectsWriter,
    default_rejects_path,
    open_contacts,
)
from outreach.logsetup import log_to_file
from outreach.services import ServiceError
from results.limits import COMMUNITY_MAX, text_problem
from results.residents import ImportSummary, import_residents
from results.store import Store, describe_db_error

log = logging.getLogger(__name__)

EXIT_STORE_FAILED = 1

# Opened around the import with the file's row count (if known); yields a progress callback or None.
ProgressFactory = Callable[[int | None], AbstractContextManager[Callable[[int], None] | None]]


@dataclass(frozen=True, slots=True)
class ImportResult:
    summary: ImportSummary
    rejects_file: Path | None
    sheet_count: int = 0  # worksheets in the workbook (0 for CSV)
    sheets_read: tuple[str, ...] = ()
    sheets_skipped: tuple[tuple[str, str], ...] = ()  # (worksheet, why, in Chinese)


def import_file(
    store_factory: Callable[[], Store],
    file: Path,
    *,
    community: str = "",
    rejects: Path | None = None,
    actor: str = "",
    source_name: str | None = None,
    progress: ProgressFactory | None = None,
    sheet: str | None = None,
) -> ImportResult:
    """Import residents from `file`; rows are merged by phone, bad rows go to a rejects file.

    `store_factory` returns the store (opened only once the file is known to be readable); `source_name`
    is what residents record as their source file (default: the path as given). A workbook: every worksheet
    with a phone column is read, or only `sheet`.

    Raises:
        ServiceError: the file cannot be imported (nothing was imported), or the store failed (code 1).
    """
    problem = text_problem(community, COMMUNITY_MAX)
    if problem:
        raise ServiceError(f"--community {community[:40]!r} {problem}", zh=f"社区名称无效：最多 {COMMUNITY_MAX} 字")
    try:
        source = open_contacts(file, sheet=sheet)
    except ImportFileError as exc:
        raise ServiceError(str(exc), zh=f"文件无法导入：{exc}") from exc
    try:
        rejects_path = rejects if rejects is not None else default_rejects_path(file)
        is_xlsx = rejects_path.suffix.lower() in (".xlsx", ".xlsm")
        if is_xlsx != (source.kind == "xlsx"):
            raise ServiceError(f"--rejects {rejects_path}: the rejects file has the input's format, name it .{source.kind}")
        if rejects_path.resolve() == file.resolve():
            raise ServiceError(f"--rejects {rejects_path}: must not be the input file")
        if not rejects_path.parent.is_dir():  # fail before reading the file, not after a long import
            raise ServiceError(
                f"cannot write the rejects file {rejects_path}: the folder {rejects_path.parent} does not exist; "
                "choose another place with --rejects (nothing was imported)",
                zh="无法写入错误行文件，未导入任何数据",
            )
        store = store_factory()
        writer = RejectsWriter(rejects_path, source)

        def rows() -> Iterator[ContactRow]:
            for item in source.records():
                if isinstance(item, RejectedRow):
                    writer.write(item)
                else:
                    yield item

        bar = progress(source.total_hint) if progress is not None else nullcontext(None)
        try:
            with bar as on_progress:
                summary = import_residents(
                    store,
                    rows(),
                    source_file=source_name if source_name is not None else str(file),
                    default_community=community.strip(),
                    actor=actor,
                    # the rejects file is completed inside the import's transaction: if it cannot be
                    # written, nothing is imported
                    rejected=writer.finish,
                    progress=on_progress,
                )
        except ImportFileError as exc:
            writer.discard()
            raise ServiceError(f"{exc} (nothing was imported)", zh=f"{exc}（未导入任何数据）") from exc
        except SQLAlchemyError as exc:
            writer.discard()
            log_to_file(log, f"import of {file} failed", exc)  # the details (masked) go to the log file only
            raise ServiceError(f"import of {file} failed, the store is unchanged: {describe_db_error(exc)}",
                               zh="导入失败，数据库未改动", code=EXIT_STORE_FAILED) from exc
        except OSError as exc:  # writing the rejects file (a read-only folder, a full disk) or reading the input
            writer.discard()
            if exc.filename is not None and Path(exc.filename) == writer.temp_path:
                raise ServiceError(
                    f"cannot write the rejects file {rejects_path}: {exc.strerror or exc}; "
                    "choose another place with --rejects (nothing was imported)",
                    zh="无法写入错误行文件，未导入任何数据",
                ) from exc
            raise ServiceError(f"{exc.filename or file}: {exc.strerror or exc} (nothing was imported)",
                               zh=f"读取文件失败：{exc.strerror or exc}（未导入任何数据）") from exc
        except BaseException:
            writer.discard()
            raise
        try:
            written = writer.commit()
        except OSError as exc:
            raise ServiceError(
                f"the residents were imported, but the rejects file could not be moved to {rejects_path}: "
                f"{exc.strerror or exc}; the rejected rows are in {writer.temp_path}",
                zh="居民已导入，但错误行文件无法保存", code=EXIT_STORE_FAILED,
            ) from exc
    finally:
        source.close()
    return ImportResult(summary, written, source.sheet_count, tuple(source.sheets_read),
                        tuple(source.sheets_skipped))
