"""`outreach purge`: answers whose kept audio is deleted are marked purged, never left naming a missing file."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from outreach.cli import app
from results.audio import forget_audio
from results.models import CallAttempt, Campaign, CampaignContact, Resident, ScreeningRecord
from results.store import Store

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def _record(store: Store, audio: dict[str, str | None]) -> int:
    with store.session() as s:
        r = Resident(name="张伟", phone=f"+861380013{len(audio):04d}")
        c = Campaign(name=f"c{len(audio)}", script_path="x.yaml")
        s.add_all([r, c])
        s.flush()
        cc = CampaignContact(campaign_id=c.id, resident_id=r.id)
        s.add(cc)
        s.flush()
        a = CallAttempt(campaign_id=c.id, contact_id=cc.id, resident_id=r.id, channel_id=f"ch{len(audio)}",
                        attempt_no=1, started_at=NOW)
        s.add(a)
        s.flush()
        answers = {f: {"value": True, "raw": "有", "audio": ref} for f, ref in audio.items()}
        rec = ScreeningRecord(attempt_id=a.id, campaign_id=c.id, resident_id=r.id, outcome="completed", answers=answers)
        s.add(rec)
        s.flush()
        return rec.id


def test_forget_audio_marks_only_the_purged_answers(db_url: str) -> None:
    store = Store(db_url)
    rid = _record(store, {"has_symptoms": "2020-01-01/a.wav", "contact_case": "2099-01-01/b.wav", "traveled": None})
    assert forget_audio(store, {"2020-01-01/a.wav"}) == 1
    assert forget_audio(store, {"2020-01-01/a.wav"}) == 0  # idempotent
    with store.session() as s:
        answers = s.get(ScreeningRecord, rid).answers  # type: ignore[union-attr]
    assert answers["has_symptoms"]["audio"] is None and answers["has_symptoms"]["audio_purged"] is True
    assert answers["has_symptoms"]["raw"] == "有"
    assert answers["contact_case"]["audio"] == "2099-01-01/b.wav" and "audio_purged" not in answers["contact_case"]
    store.close()


def test_purge_cli_marks_records_then_deletes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    rid = _record(store, {"has_symptoms": "2020-01-01/a.wav", "contact_case": "2099-01-01/b.wav"})
    audio = tmp_path / "answers"
    old, new = audio / "2020-01-01" / "a.wav", audio / "2099-01-01" / "b.wav"
    for p in (old, new):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * 100)
    month_ago = time.time() - 31 * 86400
    os.utime(old, (month_ago, month_ago))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"turn:\n  audio_dir: {audio}\n", encoding="utf-8")

    dry = CliRunner().invoke(app, ["--config", str(cfg), "--db", url, "purge", "--older-than", "30", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    with store.session() as s:
        assert s.get(ScreeningRecord, rid).answers["has_symptoms"]["audio"] == "2020-01-01/a.wav"  # type: ignore[union-attr]

    done = CliRunner().invoke(app, ["--config", str(cfg), "--db", url, "purge", "--older-than", "30"])
    assert done.exit_code == 0, done.output
    assert "marked the audio of 1 screening record(s) as purged" in done.output
    assert not old.exists() and new.exists()
    with store.session() as s:
        answers = s.scalars(select(ScreeningRecord.answers)).one()
    assert answers["has_symptoms"]["audio"] is None and answers["has_symptoms"]["audio_purged"] is True
    assert answers["contact_case"]["audio"] == "2099-01-01/b.wav"
    store.close()
