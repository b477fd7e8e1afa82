"""The typed config loader: defaults, unknown keys, YAML errors, secrets, environment overrides, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from outreach.config import Config, ConfigError, load_config, masked_dump
from tests.conftest import ROOT


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_shipped_config_yaml_is_valid_and_equals_the_embedded_defaults() -> None:
    cfg = load_config(ROOT / "config.yaml", environ={})
    assert cfg == Config()
    assert cfg.database.url.startswith("sqlite:///./var/")
    assert cfg.telephony.backend == "simulated"
    assert cfg.tts.engine == "espeak"
    assert cfg.sms.gateway == "dry_run"


def test_unknown_key_names_path_line_and_closest_key(tmp_path: Path) -> None:
    p = write(tmp_path, "database:\n  url: sqlite:///x.db\ntts:\n  engin: edge\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p, environ={})
    msg = str(exc.value)
    assert f"{p}:4" in msg and "'tts.engin'" in msg and "did you mean 'tts.engine'" in msg


def test_unknown_nested_key(tmp_path: Path) -> None:
    p = write(tmp_path, "campaign:\n  retry:\n    max_atempts_total: 4\n")
    with pytest.raises(ConfigError, match=r"config.yaml:3: unknown key 'campaign.retry.max_atempts_total' \(did you mean 'campaign.retry.max_attempts_total'"):
        load_config(p, environ={})


def test_unknown_section(tmp_path: Path) -> None:
    p = write(tmp_path, "databse:\n  url: x\n")
    with pytest.raises(ConfigError, match="did you mean 'database'"):
        load_config(p, environ={})


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    p = write(tmp_path, "database:\n  url: [unclosed\ntts:\n  engine: edge\n")
    with pytest.raises(ConfigError, match=r"YAML syntax error at line \d+, column \d+"):
        load_config(p, environ={})


def test_bad_value_names_key_and_line(tmp_path: Path) -> None:
    p = write(tmp_path, "telephony:\n  backend: carrier-pigeon\n")
    with pytest.raises(ConfigError, match=r"config.yaml:2: 'telephony.backend'"):
        load_config(p, environ={})


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    p = write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(p, environ={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_secret_in_file_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "sms:\n  gateway: twilio\n  twilio_auth_token: abc123\n")
    with pytest.raises(ConfigError, match="OUTREACH_SMS__TWILIO_AUTH_TOKEN"):
        load_config(p, environ={})


def test_environment_overrides_any_key_and_carries_secrets(tmp_path: Path) -> None:
    p = write(tmp_path, "database:\n  url: sqlite:///a.db\n")
    env = {
        "OUTREACH_DATABASE__URL": "postgresql://u:pw@db/outreach",
        "OUTREACH_CAMPAIGN__RETRY__MAX_ATTEMPTS_TOTAL": "4",
        "OUTREACH_TELEPHONY__CALLER_ID": "12320",
        "OUTREACH_SMS__TWILIO_AUTH_TOKEN": "s3cret",
        "OUTREACH_TELEPHONY__AMI__SECRET": "amipw",
        "UNRELATED": "x",
    }
    cfg = load_config(p, environ=env)
    assert cfg.database.url == "postgresql://u:pw@db/outreach"
    assert cfg.campaign.retry.max_attempts_total == 4
    assert cfg.telephony.caller_id == "12320"  # stays a string
    assert cfg.sms.twilio_auth_token is not None and cfg.sms.twilio_auth_token.get_secret_value() == "s3cret"
    dumped = json.dumps(masked_dump(cfg))
    assert "s3cret" not in dumped and "amipw" not in dumped and ":pw@" not in dumped
    assert masked_dump(cfg)["sms"]["twilio_auth_token"] == "********"


def test_unknown_environment_variable_is_an_error() -> None:
    with pytest.raises(ConfigError, match="OUTREACH_DATABASE__URLL names no config key"):
        load_config(None, environ={"OUTREACH_DATABASE__URLL": "x"})


def test_invalid_env_value_is_reported() -> None:
    with pytest.raises(ConfigError, match="campaign.retry.max_attempts_total"):
        load_config(None, environ={"OUTREACH_CAMPAIGN__RETRY__MAX_ATTEMPTS_TOTAL": "99"})


def test_overrides_win(tmp_path: Path) -> None:
    cfg = load_config(None, environ={"OUTREACH_DATABASE__URL": "sqlite:///env.db"},
                      overrides={"database": {"url": "sqlite:///cli.db"}})
    assert cfg.database.url == "sqlite:///cli.db"


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "outreach", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_cli_config_show_masks_secrets_and_honours_db(tmp_path: Path) -> None:
    r = run_cli("--db", "postgresql://u:topsecret@h/db", "config", "show", "--json", cwd=ROOT,
                env={"OUTREACH_SMS__TWILIO_AUTH_TOKEN": "tok-123"})
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["sms"]["twilio_auth_token"] == "********"
    assert "topsecret" not in r.stdout and "tok-123" not in r.stdout
    assert data["database"]["url"].startswith("postgresql://u:***@h/db")


def test_cli_bad_config_exits_2_with_message(tmp_path: Path) -> None:
    p = write(tmp_path, "tts:\n  engin: edge\n")
    r = run_cli("--config", str(p), "config", "show", cwd=tmp_path)
    assert r.returncode == 2
    assert "unknown key 'tts.engin'" in r.stderr


def test_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    """A section written twice must not silently replace the first one (review of issue 3)."""
    p = write(tmp_path, "database:\n  url: sqlite:///a.db\ntts:\n  engine: edge\ndatabase:\n  url: sqlite:///b.db\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p, environ={})
    assert str(exc.value) == f"{p}:5: duplicate key 'database' (first at line 1); keep only one"
    p = write(tmp_path, "campaign:\n  retry:\n    busy_s: 600\n    busy_s: 900\n")
    with pytest.raises(ConfigError, match=r"config.yaml:4: duplicate key 'campaign.retry.busy_s' \(first at line 3\)"):
        load_config(p, environ={})


def test_invalid_env_value_names_the_variable_not_the_file_line(tmp_path: Path) -> None:
    p = write(tmp_path, "telephony:\n  ami:\n    port: 5038\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p, environ={"OUTREACH_TELEPHONY__AMI__PORT": "abc"})
    msg = str(exc.value)
    assert "environment variable OUTREACH_TELEPHONY__AMI__PORT: 'telephony.ami.port'" in msg
    assert f"{p}:3" not in msg


def test_database_password_in_file_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "database:\n  url: postgresql+psycopg://outreach:hunter2@db/outreach\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p, environ={})
    msg = str(exc.value)
    assert f"{p}:2: 'database.url' carries a password" in msg and "OUTREACH_DATABASE__URL" in msg
    assert "hunter2" not in msg
    # without a password in the file, and with the password from the environment, it loads
    p = write(tmp_path, "database:\n  url: postgresql+psycopg://outreach@db/outreach\n")
    assert load_config(p, environ={}).database.url == "postgresql+psycopg://outreach@db/outreach"
    cfg = load_config(p, environ={"OUTREACH_DATABASE__URL": "postgresql+psycopg://outreach:hunter2@db/outreach"})
    assert cfg.database.url.endswith(":hunter2@db/outreach")
