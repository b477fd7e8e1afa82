"""The seed store every case starts from: residents (formula-like names, a multi-number cell, a landline, IDs)
and a finished campaign c1 with screenings and escalations."""

from __future__ import annotations

import os
import sqlite3
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
        for i, args in enumerate(seed_commands(folder)):
            if i == 1:  # the simulated network runs only on a store of made-up people: mark these so
                con = sqlite3.connect(folder / "seed.db")
                con.execute("UPDATE residents SET source_file = 'synthetic'")
                con.commit()
                con.close()
            res = CliRunner().invoke(app, args, env={"OUTREACH_CONFIG": ""})
            if res.exit_code != 0:
                raise RuntimeError(f"seeding failed: {args}: {res.output}") from res.exception
    finally:
        os.chdir(cwd)
    return folder / "seed.db"
