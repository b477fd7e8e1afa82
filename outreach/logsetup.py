"""Logging set-up: one format, stderr plus an optional log file, and the one masker on every record.

Every handler this module installs masks phone and national ID numbers (`common.masking.mask_text`) in
the message, its arguments and any exception text, unless `logging.unmask_phones` is set. SQLAlchemy's
statement log (`database.echo`) goes through the same handlers; its parameters are never shown
(the store's engine hides them), so a row's phone numbers cannot reach a log even in an error.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

from common.masking import mask_text

__all__ = ["MaskingFilter", "add_log_file", "log_file_handler", "log_file_path", "log_to_file", "mask_text", "setup_logging"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _MaskingFormatter(logging.Formatter):
    """Masks the whole formatted record, exception and stack text included."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


class MaskingFilter(logging.Filter):
    """Rewrites each record's message with numbers masked (arguments are merged first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logged as is; logging must never raise
            return True
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def _own(handler: logging.Handler, kind: str) -> logging.Handler:
    handler._outreach = kind  # type: ignore[attr-defined]
    return handler


def _replace(root: logging.Logger, kind: str, handler: logging.Handler | None) -> None:
    for h in list(root.handlers):
        if getattr(h, "_outreach", None) == kind:
            root.removeHandler(h)
            h.close()
    if handler is not None:
        root.addHandler(handler)


def _formatter(unmask: bool) -> logging.Formatter:
    return logging.Formatter(_FORMAT) if unmask else _MaskingFormatter(_FORMAT)


def setup_logging(level: int | str = logging.WARNING, *, unmask: bool = False) -> None:
    """Configure the root logger's stderr handler: timestamps, numbers masked unless `unmask`."""
    _install(logging.StreamHandler(), "stderr", level, unmask)


class _LogFile(logging.FileHandler):
    """A log file opened at the first record (its folder created then); if it cannot be written it goes
    quiet instead of printing a traceback: a log file never stops or clutters a command."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)

    def _open(self) -> io.TextIOWrapper:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()

    def handleError(self, record: logging.LogRecord) -> None:
        self.setLevel(logging.CRITICAL + 1)


def add_log_file(path: str | Path, level: int | str = logging.INFO, *, unmask: bool = False) -> Path:
    """Also log to `path` (appended, created with its folder at the first record) at `level`."""
    p = Path(path).expanduser().absolute()
    _install(_LogFile(p), "file", level, unmask)
    return p


def _install(handler: logging.Handler, kind: str, level: int | str, unmask: bool) -> None:
    """Put `handler` (masking unless `unmask`) in place of our previous handler of that kind."""
    handler.setFormatter(_formatter(unmask))
    if not unmask:
        handler.addFilter(MaskingFilter())
    handler.setLevel(level)
    root = logging.getLogger()
    _replace(root, kind, _own(handler, kind))
    _set_root_level(root)


def log_file_handler() -> logging.FileHandler | None:
    """The log file handler installed by `add_log_file`, if any."""
    for h in logging.getLogger().handlers:
        if getattr(h, "_outreach", None) == "file" and isinstance(h, logging.FileHandler):
            return h
    return None


def log_to_file(logger: logging.Logger, message: str, exc: BaseException) -> None:
    """An error with its traceback for the log file only: the terminal gets the one-line message."""
    handler = log_file_handler()
    if handler is None:
        return
    record = logger.makeRecord(logger.name, logging.ERROR, "(outreach)", 0, "%s: %s: %s",
                               (message, type(exc).__name__, exc), (type(exc), exc, exc.__traceback__))
    handler.handle(record)


def log_file_path() -> Path | None:
    """The log file installed by `add_log_file`, if any."""
    h = log_file_handler()
    return Path(h.baseFilename) if h is not None else None


def _set_root_level(root: logging.Logger) -> None:
    """The root passes what the most verbose of our handlers wants."""
    levels = [h.level for h in root.handlers if getattr(h, "_outreach", None)]
    root.setLevel(min(levels) if levels else logging.WARNING)
