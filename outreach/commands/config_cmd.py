"""`outreach config show` and `outreach db upgrade`."""

from __future__ import annotations

import json

import typer
import yaml

from outreach.config import masked_dump
from outreach.context import get_ctx

app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)


@app.command("show")
def show(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML.")) -> None:
    """Print the effective config (file + environment + options), secrets masked."""
    data = masked_dump(get_ctx(ctx).config())
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), end="")


@db_app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Create the store or migrate it to the newest schema."""
    store = get_ctx(ctx).store(create=True)
    from results.store import current_revision

    print(f"database at revision {current_revision(store.engine)}")
