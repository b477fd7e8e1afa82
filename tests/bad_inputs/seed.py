"""The seed store every case starts from: residents (formula-like names, a multi-number cell, a landline, IDs)
and a finished campaign c1 with screenings and escalations."""

from __future__ import annotations

import os
from pathlib import Path

from tests.bad_inputs.cases import seed_commands


def build_seed(folder: Path) -> Path:
    """Build the seed store in `folder` through the CLI; returns the SQLite file."""
    from typer.testing import CliRunner

    from outreach.cli import app

    folder.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for args in seed_commands(folder):
            res = CliRunner().invoke(app, args, env={"OUTREACH_CONFIG": ""})
            if res.exit_code != 0:
                raise RuntimeError(f"seeding failed: {args}: {res.output}") from res.exception
    finally:
        os.chdir(cwd)
    return folder / "seed.db"
