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
    _add_users(folder / "seed.db")
    return folder / "seed.db"


def _add_users(db: Path) -> None:
    """Web accounts for the HTTP cases: an admin, a staff member, a worker of 阳光社区."""
    from outreach.services.accounts import add_user
    from results.store import Store
    from tests.bad_inputs.http import PASSWORD

    store = Store(f"sqlite:///{db}")
    try:
        for name, role, communities in (("admin", "admin", []), ("staff", "staff", []), ("worker", "worker", ["阳光社区"])):
            add_user(store, name, role=role, communities=communities, password=PASSWORD, actor="seed")
    finally:
        store.close()
