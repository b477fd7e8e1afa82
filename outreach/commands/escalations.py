"""`outreach escalations export`: the community lists of people to call back or visit."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from outreach.context import fail, get_ctx

app = typer.Typer(help="Escalation lists for community workers.", no_args_is_help=True)


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    campaign: str | None = typer.Option(None, "--campaign", help="Only this campaign (default: every escalation)."),
    fmt: str | None = typer.Option(None, "--format", help="xlsx (one sheet per community) | csv (default: from the --out extension, which must agree)"),
    out: Path = typer.Option(..., "--out", help="Output file."),
    status: str = typer.Option("open", "--status", help="open | all"),
    unmasked: bool = typer.Option(False, "--unmasked", help="Full phone and ID numbers (written to the audit log)."),
) -> None:
    """One sheet per community, most urgent first, with reason and evidence (answers, last call, SMS state);
    phones and IDs masked unless --unmasked."""
    from results.exports import FORMATS, ExportError, export_escalations

    if fmt is not None and fmt not in FORMATS:
        fail(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if status not in ("open", "all"):
        fail(f"--status {status!r}: choose open or all")
    try:
        n = export_escalations(get_ctx(ctx).store(), campaign=campaign, fmt=fmt, out=out, unmasked=unmasked,
                               only_open=status == "open", actor=os.environ.get("USER", "cli"))
    except ExportError as exc:
        fail(str(exc))
        return
    note = " (unmasked; recorded in the audit log)" if unmasked else ""
    print(f"wrote {n} escalations to {out}{note}")
