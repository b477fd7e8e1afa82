"""The `outreach` command line."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import typer

from outreach.context import AppContext
from outreach.logsetup import setup_logging

app = typer.Typer(
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
    ("prompts", "app", "prompts"),
    ("prompts", "register", None),
    ("models", "app", "models"),
    ("media", "register", None),
]


@app.callback()
def main_callback(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", help="Config file (default: $OUTREACH_CONFIG or ./config.yaml)."),
    db: str | None = typer.Option(None, "--db", help="Database URL, overrides database.url."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    setup_logging(logging.DEBUG if verbose else logging.WARNING)
    app_ctx = AppContext(config_path=config, db_url=db)
    ctx.obj = app_ctx
    ctx.call_on_close(app_ctx.close)


def _register() -> None:
    for module_name, attr, name in _GROUPS:
        try:
            module = importlib.import_module(f"outreach.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"outreach.commands.{module_name}":
                continue  # that command group is not part of this build yet
            raise
        obj = getattr(module, attr, None)
        if obj is None:
            continue
        if name is None:
            obj(app)
        else:
            app.add_typer(obj, name=name)


_register()


def main() -> None:
    app()
