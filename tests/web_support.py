"""Shared set-up of the web console tests: a store with a finished simulated campaign (the demo engine,
real dialogs on the simulated network), accounts of every role, kept answer audio, and a logged-in client."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from campaigns.demo import run_demo
from outreach.commands.campaign import demo_settings
from outreach.config import Config, load_config
from outreach.services.accounts import add_user
from results.models import Resident, ScreeningRecord
from results.store import Store

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse 1"


def make_config(tmp: Path, url: str) -> Config:
    return load_config(ROOT / "config.yaml", overrides={
        "database": {"url": url},
        "turn": {"audio_dir": str(tmp / "answers")},
        "tts": {"cache_dir": str(tmp / "prompts")},
        "web": {"data_dir": str(tmp / "web")},
    })


def write_wav(path: Path, seconds: float = 0.4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x10\x00\xf0\xff" * int(4000 * seconds))


@dataclass
class World:
    url: str
    config: Config
    communities: list[str]  # sorted communities of the demo residents
    a: str  # the community of worker_a
    audio_records: dict[str, int]  # community -> a screening record id with kept audio


def build_world(tmp: Path, residents: int = 80) -> World:
    """Run a small demo campaign into tmp/outreach.db, add accounts and kept audio."""
    config = make_config(tmp, f"sqlite:///{tmp / 'outreach.db'}")
    result = run_demo(demo_settings(config), tmp, residents=residents, write_exports=False)
    store = Store(result.store_url)
    try:
        with store.session() as s:
            communities = sorted({c for (c,) in s.execute(select(Resident.community).distinct())})
            audio: dict[str, int] = {}
            for rec, community in s.execute(
                select(ScreeningRecord, Resident.community).join(Resident, Resident.id == ScreeningRecord.resident_id)
                .order_by(ScreeningRecord.id)
            ):
                if community in audio or "has_symptoms" not in (rec.answers or {}):
                    continue
                ref = f"{rec.campaign_id}/{rec.id}-has_symptoms.wav"
                write_wav(Path(config.turn.audio_dir) / ref)
                answers = dict(rec.answers)
                answers["has_symptoms"] = {**answers["has_symptoms"], "audio": ref}
                rec.answers = answers
                audio[community] = rec.id
        a = communities[0]
        add_user(store, "admin", role="admin", communities=[], password=PASSWORD, actor="test")
        add_user(store, "staff", role="staff", communities=[], password=PASSWORD, actor="test")
        add_user(store, "worker_a", role="worker", communities=[a], password=PASSWORD, actor="test")
        add_user(store, "worker_b", role="worker", communities=[communities[1]], password=PASSWORD, actor="test")
    finally:
        store.close()
    return World(result.store_url, config, communities, a, audio)


def copy_world(world: World, src: Path, dst: Path) -> World:
    """A private copy of a built world (its SQLite file and audio) for a test that changes it."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "outreach.db", dst / "outreach.db")
    if (src / "answers").exists():
        shutil.copytree(src / "answers", dst / "answers", dirs_exist_ok=True)
    url = f"sqlite:///{dst / 'outreach.db'}"
    return World(url, make_config(dst, url), world.communities, world.a, world.audio_records)


class Clock:
    """The app's clock, moved by tests (sessions, lockouts)."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += dt.timedelta(**kw)


def login(client: TestClient, name: str, password: str = PASSWORD, *, follow: bool = False) -> Any:
    r = client.get("/login")
    assert r.status_code == 200
    token = client.cookies.get("outreach_login_csrf")
    assert token
    return client.post("/login", data={"username": name, "password": password, "csrf_token": token, "next": "/"},
                       follow_redirects=follow)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)
