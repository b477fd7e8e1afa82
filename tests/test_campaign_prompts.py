"""On a voice backend a campaign does not start while a prompt it needs is missing from the TTS cache."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from campaigns.synthetic import synthetic_residents
from outreach.cli import app
from results import campaigns as db
from results.store import Store
from tests.test_campaign_engine import START


def voice_config(tmp_path: Path, *, fallback: bool) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(
        "telephony:\n  backend: asterisk\n"
        f"tts:\n  engine: espeak\n  cache_dir: {tmp_path / 'prompts'}\n  fallback_offline: {str(fallback).lower()}\n",
        encoding="utf-8",
    )
    return p


def cli(config: Path, url: str, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["--config", str(config), "--db", url, *args])
    return res.exit_code, res.output


def test_start_refuses_missing_prompts_and_names_them_then_starts_once_rendered(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    db.add_residents(store, synthetic_residents(5, seed=3), now=START)
    store.close()
    config = voice_config(tmp_path, fallback=False)

    code, out = cli(config, url, "campaign", "create", "voice1")
    assert code == 0, out
    code, out = cli(config, url, "campaign", "start", "voice1")
    assert code == 2
    assert "campaign 'voice1' cannot start" in out
    assert "not rendered for espeak/" in out and "好的，问您几个简单的问题" in out.replace("\n", "")
    assert db.get_campaign(Store(url), "voice1").state == "draft"

    code, out = cli(config, url, "prompts", "render", "--script", "dialogs/scripts/covid_screening.yaml")
    assert code == 0, out
    code, out = cli(config, url, "campaign", "start", "voice1")
    assert code == 0, out
    assert db.get_campaign(Store(url), "voice1").state == "running"


def test_offline_fallback_lets_a_campaign_start_without_rendering(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    db.add_residents(store, synthetic_residents(3, seed=4), now=START)
    store.close()
    config = voice_config(tmp_path, fallback=True)
    assert cli(config, url, "campaign", "create", "voice2")[0] == 0
    code, out = cli(config, url, "campaign", "start", "voice2")
    assert code == 0, out
