"""The `outreach` command line."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from common.masking import mask_text
from outreach.context import AppContext
from outreach.logsetup import add_log_file, log_file_path, log_to_file, setup_logging

log = logging.getLogger("outreach")

EXIT_INTERNAL = 1
DEFAULT_LOG_FILE = "./var/outreach.log"


class _Group(TyperGroup):
    """The top-level command group: an unexpected error never shows a traceback; the user gets one line and
    the log file keeps the details (the traceback, numbers masked)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException, KeyboardInterrupt):
            raise
        except Exception as exc:
            report_internal_error(exc)
            raise typer.Exit(EXIT_INTERNAL) from None


def report_internal_error(exc: BaseException) -> None:
    """Log `exc` with its traceback to the log file and print one masked line to stderr."""
    path = log_file_path() or add_log_file(DEFAULT_LOG_FILE)
    log_to_file(log, "internal error", exc)  # the traceback goes to the file only, never to the terminal
    detail = mask_text(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    shown = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    typer.echo(f"error: internal error ({shown[:300]}); the details are in the log file {path}", err=True)


app = typer.Typer(
    cls=_Group,
    name="outreach",
    help="Outbound voice robot and SMS outreach for public-health hotlines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# (module under outreach.commands, attribute, sub-command name or None for top-level commands)
_GROUPS: list[tuple[str, str, str | None]] = [
    ("config_cmd", "app", "config"),
    ("config_cmd", "db_app", "db"),
    ("contacts", "app", "contacts"),
    ("dialog", "app", "dialog"),
    ("nlu", "register", None),
    ("campaign", "app", "campaign"),
    ("campaign", "register", None),
    ("results_cmd", "app", "results"),
    ("dnc", "app", "dnc"),
    ("prompts", "app", "prompts"),
    ("models", "app", "models"),
    ("media", "register", None),
    ("web_cmd", "register", None),
    ("web_cmd", "users_app", "users"),
    ("sms_cmd", "app", "sms"),
    ("escalations", "app", "escalations"),
    ("asterisk", "app", "asterisk"),
]
# Top-level commands added by a module's register(): command name -> module.
_TOP_LEVEL = {"nlu": "nlu", "run": "campaign", "demo": "campaign", "purge": "media", "serve": "web_cmd"}
_GLOBAL_OPTIONS_WITH_VALUE = {"--config", "--db"}


@app.callback()
def main_callback(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", help="Config file (default: $OUTREACH_CONFIG or ./config.yaml)."),
    db: str | None = typer.Option(None, "--db", help="Database URL, overrides database.url."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    setup_logging(logging.DEBUG if verbose else logging.WARNING)
    app_ctx = AppContext(config_path=config, db_url=db, verbose=verbose)
    ctx.obj = app_ctx
    ctx.call_on_close(app_ctx.close)


def _invoked_command(argv: list[str]) -> str | None:
    """The command name on the command line, skipping global options; None when there is none."""
    it = iter(argv)
    for arg in it:
        if arg in _GLOBAL_OPTIONS_WITH_VALUE:
            next(it, None)
        elif arg.startswith("-"):
            continue
        else:
            return arg
    return None


def _register(argv: list[str] | None = None) -> None:
    """Import the command modules. Only the invoked one is imported, so `outreach nlu` starts fast;
    help, completion and unknown commands import them all."""
    command = _invoked_command(sys.argv[1:] if argv is None else argv)
    wanted: set[str] | None = None
    if command is not None:
        if command in _TOP_LEVEL:
            wanted = {_TOP_LEVEL[command]}
        else:
            wanted = {m for m, _, name in _GROUPS if name == command} or None
    for module_name, attr, name in _GROUPS:
        if wanted is not None and module_name not in wanted:
            continue
        module = importlib.import_module(f"outreach.commands.{module_name}")
        obj = getattr(module, attr)
        if name is None:
            obj(app)
        else:
            app.add_typer(obj, name=name)


_register()


def main() -> None:
    app()
