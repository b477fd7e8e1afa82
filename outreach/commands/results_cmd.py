"""`outreach results export`: a campaign's screenings, attempts or escalations as CSV or XLSX."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from outreach.context import fail, get_ctx
from outreach.services import ServiceError
from outreach.services.exports import check_export, export_campaign

app = typer.Typer(help="Export campaign results.", no_args_is_help=True)


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    campaign: str = typer.Option(..., "--campaign", help="Campaign name."),
    what: str = typer.Option(..., "--what", help="screenings | attempts | escalations"),
    fmt: str | None = typer.Option(None, "--format", help="csv | xlsx (default: from the --out extension, which must agree)."),
    out: Path = typer.Option(..., "--out", help="Output file."),
    unmasked: bool = typer.Option(False, "--unmasked", help="Full phone and ID numbers (written to the audit log)."),
) -> None:
    """Export with Chinese column headers; phones and IDs are masked unless --unmasked."""
    try:
        check_export(what, fmt)
        n = export_campaign(get_ctx(ctx).store(), campaign=campaign, what=what, fmt=fmt, out=out, unmasked=unmasked,
                            actor=os.environ.get("USER", "cli"))
    except ServiceError as exc:
        fail(str(exc), code=exc.code)
        return
    note = " (unmasked; recorded in the audit log)" if unmasked else ""
    print(f"wrote {n} {what} rows to {out}{note}")
