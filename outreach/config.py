"""Typed configuration: `config.yaml` defaults, validated, overridden by `OUTREACH_...` environment variables.

Rules:
- Unknown keys are errors naming the key path, the YAML line and the closest valid key.
- YAML syntax errors name the file, line and column.
- Secrets (`SecretStr` fields) are never read from files, only from environment variables.
- Any key can be overridden by an environment variable: `OUTREACH_<SECTION>__<KEY>` (double underscore
  between levels), e.g. `OUTREACH_DATABASE__URL`, `OUTREACH_SMS__TWILIO_AUTH_TOKEN`.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from dialogs import safeyaml

ENV_PREFIX = "OUTREACH_"
DEFAULT_CONFIG_NAME = "config.yaml"
CONFIG_MAX_BYTES = 1 << 20


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file, key and line."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatabaseConfig(_Section):
    url: str = "sqlite:///./var/outreach.db"
    echo: bool = False


class AmiConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str = "outreach"
    secret: SecretStr | None = None
    reconnect_s: float = Field(2.0, gt=0, description="first reconnect delay; doubles up to 30 s")
    ping_interval_s: float = Field(5.0, gt=0, description="our keep-alive Ping; no Pong within ping_timeout_s drops the link")
    ping_timeout_s: float = Field(3.0, gt=0)
    action_timeout_s: float = Field(5.0, gt=0)


class AudioSocketConfig(_Section):
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(9092, ge=0, le=65535)
    advertise_host: str = Field(
        "127.0.0.1",
        description="the address Asterisk connects to: sent with each Originate as AUDIOSOCKET_ADDR=host:listen_port "
        "for AudioSocket(${AUDIOSOCKET_UUID},${AUDIOSOCKET_ADDR}); inbound calls use the dialplan's fixed address",
    )
    stall_s: float = Field(2.0, gt=0, description="no frame from Asterisk for this long ends the call")


class HumanQueueConfig(_Section):
    """Where a resident who asks for a person is transferred (AMI Redirect), and when it is staffed."""

    enabled: bool = False
    context: str = "outreach-human"
    exten: str = "s"
    hours: list[str] = Field(default_factory=lambda: ["09:00-12:00", "14:00-18:00"],
                             description="staffed hours, local time (campaign.timezone), HH:MM-HH:MM")


class AsteriskConfig(_Section):
    robot_context: str = "outreach-robot"
    robot_exten: str = "s"
    inbound: bool = Field(True, description="answer residents who call back (the outreach-inbound context)")
    human_queue: HumanQueueConfig = HumanQueueConfig()


class TrunkConfig(_Section):
    """One trunk: its limits hold in total, across every campaign and every worker."""

    name: str = "default"
    channel: str = "PJSIP/{number}@trunk"
    max_channels: int = Field(30, ge=1)
    calls_per_second: float = Field(2.0, gt=0)


class TelephonyConfig(_Section):
    backend: Literal["simulated", "asterisk"] = "simulated"
    caller_id: str = "12320"
    trunk: str = "PJSIP/{number}@trunk"
    originate_timeout_s: float = Field(30.0, gt=0)
    max_call_s: float = Field(900.0, gt=0)
    max_calls_per_worker: int = Field(
        0, ge=0,
        description="the most calls one `outreach run` worker carries at once (0 = no cap): with several workers, "
        "one per core, a cap makes the others take the rest instead of one worker taking every free line",
    )
    trunks: list[TrunkConfig] = Field(default_factory=lambda: [TrunkConfig()])
    ami: AmiConfig = AmiConfig()
    audiosocket: AudioSocketConfig = AudioSocketConfig()
    asterisk: AsteriskConfig = AsteriskConfig()


class TtsConfig(_Section):
    engine: Literal["espeak", "edge"] = "espeak"
    voice: str = "zh-CN-XiaoxiaoNeural"
    espeak_voice: str = "cmn-latn-pinyin"
    rate: str = "+0%"
    pitch: str = "+0Hz"
    volume: str = "+0%"
    cache_dir: str = "./var/prompts"
    fallback_offline: bool = True


class AsrConfig(_Section):
    engine: Literal["vosk", "vosk-server", "text"] = "text"
    model_path: str = "./var/models/vosk-model-small-cn-0.22"
    server_url: str = "ws://127.0.0.1:2700"
    threads: int = Field(0, ge=0, description="0 = one per core")
    frames_per_chunk: int = Field(
        0, ge=0, le=200,
        description="Kaldi's --frames-per-chunk for in-process Vosk unless the model's conf/model.conf sets it; 0 = as the model says (Kaldi's 20)",
    )
    decode_nice: int = Field(
        10, ge=0, le=19,
        description="niceness added to in-process Vosk's decoding threads so the event loop carrying call audio goes first; 0 = same priority",
    )


class ModelsConfig(_Section):
    """Where `outreach models download` fetches speech models from and how it verifies them."""

    base_url: str = "https://alphacephei.com/vosk/models/"
    dir: str = "./var/models"
    sha256: dict[str, str] = Field(
        default_factory=dict, description="pinned sha256 of a model archive by model name (vosk-small-cn, vosk-cn)"
    )


class TurnConfig(_Section):
    trailing_silence_ms: int = Field(700, ge=200, le=3000)
    no_input_s: float = Field(5.0, gt=0)
    barge_in_ms: int = Field(300, ge=60, le=2000)
    max_utterance_s: float = Field(15.0, gt=0)
    recognizer_tail_ms: int = Field(
        300, ge=100, le=3000, description="silence after the last speech that still goes to the recognizer"
    )
    keep_answer_audio: Literal["none", "risk", "all"] = "risk"
    audio_dir: str = "./var/answers"


class NluConfig(_Section):
    engine: Literal["builtin", "rasa"] = "builtin"
    rasa_url: str = "http://127.0.0.1:5005"
    rasa_token: SecretStr | None = None
    timeout_s: float = Field(1.5, gt=0)
    low_confidence: float = Field(0.6, ge=0, le=1)


class SmsTemplateConfig(_Section):
    """One SMS template: the text without the signature (variables {name}, {due_date}, {sites},
    {hotline}), the provider's approved template code (Aliyun TemplateCode) and whether it is a pure
    notification (otherwise the opt-out line 回T退订 is added)."""

    body: str
    code: str = ""
    notification: bool = True


def _default_sms_templates() -> dict[str, SmsTemplateConfig]:
    return {
        "second_test_reminder": SmsTemplateConfig(
            body="{name}您好，请于{due_date}前往{sites}完成第二次核酸检测。已做请回复“已做”。"),
        "ring_back": SmsTemplateConfig(
            body="{name}您好，{hotline}健康热线多次来电未能联系到您，请回电{hotline}。", notification=False),
    }


class SmsConfig(_Section):
    gateway: Literal["dry_run", "twilio", "aliyun"] = "dry_run"
    timezone: str = "Asia/Shanghai"
    window: str = Field("08:00-20:00", description="HH:MM-HH:MM, local time in sms.timezone")
    rate_per_s: float = Field(20.0, ge=0, description="messages per second; 0 = no limit")
    daily_cap_per_number: int = Field(3, ge=1, le=50)
    concurrency: int = Field(8, ge=1, le=256)
    timeout_s: float = Field(10.0, gt=0)
    attempts: int = Field(4, ge=1, le=10, description="provider calls per claim on transient errors")
    max_claims: int = Field(5, ge=1, le=50)
    retry_later_s: float = Field(600.0, ge=0)
    reconcile_after_s: float = Field(120.0, gt=0)
    sign_name: str = "健康热线"
    hotline: str = "12320"
    test_sites: str = "就近核酸采样点"
    second_test_after_days: int = Field(3, ge=0, le=60)
    remind_from_arrival: bool = False
    ring_back: bool = True
    templates: dict[str, SmsTemplateConfig] = Field(default_factory=_default_sms_templates)
    public_base_url: str = Field("", description="the URL providers call our webhooks on, e.g. https://hotline.example.org")
    from_number: str = ""
    messaging_service_sid: str = ""
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr | None = None
    status_callback_url: str = ""
    twilio_base_url: str = ""
    aliyun_access_key_id: SecretStr | None = None
    aliyun_access_key_secret: SecretStr | None = None
    aliyun_endpoint: str = "dysmsapi.aliyuncs.com"
    aliyun_protocol: Literal["https", "http"] = "https"
    aliyun_callback_token: SecretStr | None = None


class RetryConfig(_Section):
    no_answer_s: int = Field(7200, ge=120)
    busy_s: int = Field(1800, ge=120)
    congestion_s: int = Field(3600, ge=120)
    failed_s: int = Field(3600, ge=120)
    hung_up_early_s: int = Field(7200, ge=120)
    interrupted_s: int = Field(600, ge=120)
    callback_default_s: int = Field(7200, ge=120)
    max_attempts_per_day: int = Field(3, ge=1, le=10)
    max_attempts_total: int = Field(5, ge=1, le=10)


class PacingConfig(_Section):
    max_concurrent_calls: int = Field(30, ge=1)
    calls_per_second: float = Field(2.0, gt=0)


class CampaignDefaults(_Section):
    timezone: str = "Asia/Shanghai"
    windows: dict[str, list[str]] = Field(
        default_factory=lambda: {"daily": ["09:00-12:00", "14:00-20:00"]},
        description="keys: daily or mon..sun; values: HH:MM-HH:MM ranges",
    )
    holidays: list[str] = Field(default_factory=list)
    script: str = "dialogs/scripts/covid_screening.yaml"
    retry: RetryConfig = RetryConfig()
    pacing: PacingConfig = PacingConfig()


class SimulationConfig(_Section):
    seed: int = 20201
    answer_rate: float = Field(0.55, ge=0, le=1)
    no_answer_rate: float = Field(0.30, ge=0, le=1)
    busy_rate: float = Field(0.06, ge=0, le=1)
    congestion_rate: float = Field(0.05, ge=0, le=1)
    invalid_rate: float = Field(0.03, ge=0, le=1)


class WebConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8320, ge=0, le=65535)
    session_secret: SecretStr | None = None
    data_dir: str = "./var/web"  # uploaded resident files and their rejects
    session_idle_minutes: int = Field(30, ge=1, le=24 * 60)
    session_max_hours: int = Field(12, ge=1, le=24 * 7)
    login_max_failures: int = Field(8, ge=3, le=100)
    lockout_minutes: int = Field(15, ge=1, le=24 * 60)
    max_upload_mb: int = Field(50, ge=1, le=2000)


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING", description="level of the log file (INFO and DEBUG write from the event loop: keep them for diagnosis)"
    )
    unmask_phones: bool = Field(False, description="log phone and ID numbers in clear (stderr and file)")
    file: str = Field("./var/outreach.log", description="log file (details of every error); empty = none")

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class CenterConfig(_Section):
    """The calling organisation, named in the greeting and in the answer to a scam suspicion."""

    name: str = Field("社区卫生中心", min_length=1, max_length=30)
    phone: str = Field("12320", min_length=3, max_length=20, description="official number residents can call to verify")


# Said after the second-test reminder only when an SMS gateway is configured (the dry-run gateway sends nothing).
SMS_REMINDER_NOTE = "稍后会给您发短信提醒。"


def script_vars(config: Config) -> dict[str, str]:
    """Template variables the config gives every script (`Script.with_vars`): the center's name and
    official phone, and the SMS promise only when a real SMS gateway is configured."""
    return {
        "center": config.center.name,
        "official_phone": config.center.phone,
        "sms_note": SMS_REMINDER_NOTE if config.sms.gateway != "dry_run" else "",
    }


class Config(_Section):
    """The whole configuration. Every section has embedded defaults."""

    center: CenterConfig = CenterConfig()
    database: DatabaseConfig = DatabaseConfig()
    telephony: TelephonyConfig = TelephonyConfig()
    tts: TtsConfig = TtsConfig()
    asr: AsrConfig = AsrConfig()
    models: ModelsConfig = ModelsConfig()
    turn: TurnConfig = TurnConfig()
    nlu: NluConfig = NluConfig()
    sms: SmsConfig = SmsConfig()
    campaign: CampaignDefaults = CampaignDefaults()
    simulation: SimulationConfig = SimulationConfig()
    web: WebConfig = WebConfig()
    logging: LoggingConfig = LoggingConfig()


# --------------------------------------------------------------------------- YAML with line numbers


def _compose(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse YAML with the tool's safe loader, returning plain data and a map of key path -> 1-based line."""
    try:
        loaded = safeyaml.load(text)
    except safeyaml.YamlError as exc:
        raise ConfigError(f"{source}:{exc.line}: {exc.message}" if exc.line else f"{source}: {exc.message}") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        at = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{at}: YAML syntax error at {where}: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: YAML error: {exc}") from exc
    for dup in loaded.duplicates:
        dotted = ".".join((*dup.path, dup.key))
        raise ConfigError(f"{source}:{dup.line}: duplicate key '{dotted}' (first at line {dup.first_line}); keep only one")
    return loaded.data, loaded.lines


def _model_for(path: tuple[str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in path:
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return None
    return model


def _is_secret(model: type[BaseModel], key: str) -> bool:
    field = model.model_fields.get(key)
    return field is not None and "SecretStr" in repr(field.annotation)


def _check_keys(data: Mapping[str, Any], path: tuple[str, ...], lines: dict[tuple[str, ...], int], source: str) -> None:
    model = _model_for(path)
    if model is None:
        return
    valid = list(model.model_fields)
    for key, value in data.items():
        full = (*path, key)
        dotted = ".".join(full)
        line = lines.get(full)
        at = f"{source}:{line}" if line else source
        if key not in model.model_fields:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f" (did you mean '{'.'.join((*path, close[0]))}'?)" if close else ""
            raise ConfigError(f"{at}: unknown key '{dotted}'{hint}; valid keys here: {', '.join(valid)}")
        field = model.model_fields[key]
        section = isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        if section and value is not None and not isinstance(value, Mapping):
            raise ConfigError(f"{at}: '{dotted}' must be a section of keys (a mapping), got {type(value).__name__}")
        if _is_secret(model, key) and value not in (None, ""):
            env = ENV_PREFIX + "__".join(p.upper() for p in full)
            raise ConfigError(f"{at}: '{dotted}' is a secret and must not be stored in a file; set {env} instead")
        if isinstance(value, Mapping):
            _check_keys(value, full, lines, source)


def _env_overrides(
    environ: Mapping[str, str], names: dict[tuple[str, ...], str] | None = None
) -> dict[str, Any]:
    """Turn `OUTREACH_A__B=value` variables into a nested dict; values are parsed as YAML scalars.

    `names`, when given, receives key path -> variable name, so errors can name the variable.
    """
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX) :]:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        model = _model_for(tuple(parts[:-1]))
        if model is None or parts[-1] not in model.model_fields:
            close = difflib.get_close_matches(".".join(parts), _all_paths(), n=1, cutoff=0.6)
            hint = f" (did you mean {ENV_PREFIX}{close[0].upper().replace('.', '__')}?)" if close else ""
            raise ConfigError(f"environment variable {name} names no config key '{'.'.join(parts)}'{hint}")
        value: Any = raw
        if not _is_secret(model, parts[-1]):
            try:
                value = safeyaml.load(raw).data if raw.strip() else raw
            except (yaml.YAMLError, safeyaml.YamlError):
                value = raw
            if isinstance(value, (int, float, bool)) and model.model_fields[parts[-1]].annotation is str:
                value = raw
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        if names is not None:
            names[tuple(parts)] = name
    return out


def _all_paths(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(_all_paths(ann, f"{prefix}{key}."))
        else:
            out.append(prefix + key)
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            base[k] = _merge(dict(base[k]), v)
        else:
            base[k] = v
    return base


def _format_validation(
    exc: ValidationError,
    lines: dict[tuple[str, ...], int],
    source: str,
    env_names: Mapping[tuple[str, ...], str] | None = None,
) -> str:
    msgs = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        env = next((env_names[loc[:i]] for i in range(len(loc), 0, -1) if env_names and loc[:i] in env_names), None)
        line = lines.get(loc)
        at = f"environment variable {env}" if env else f"{source}:{line}" if line else source
        msgs.append(f"{at}: '{'.'.join(loc)}': {err['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(msgs)


def find_default_config() -> Path | None:
    """The config file used when none is given: $OUTREACH_CONFIG, else ./config.yaml if present."""
    env = os.environ.get("OUTREACH_CONFIG")
    if env:
        return Path(env)
    here = Path.cwd() / DEFAULT_CONFIG_NAME
    return here if here.is_file() else None


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load and validate the configuration.

    Args:
        path: YAML file; None means the built-in defaults only (plus environment).
        environ: environment to read `OUTREACH_...` overrides from (default: os.environ).
        overrides: nested values applied last (e.g. the CLI's --db).

    Raises:
        ConfigError: with a message naming the file, key and line.
    """
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.exists() and not p.is_symlink():
            raise ConfigError(f"config file not found: {p}")
        try:
            _raw, text = safeyaml.read_text(p, max_bytes=CONFIG_MAX_BYTES, what="config file")
        except safeyaml.YamlError as exc:
            raise ConfigError(f"{p}:{exc.line}: {exc.message}" if exc.line else f"{p}: {exc.message}") from exc
        loaded, lines = _compose(text, source)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections, got {type(loaded).__name__}")
        _check_keys(loaded, (), lines, source)
        _check_url_password(loaded, lines, source)
        data = loaded
    env_names: dict[tuple[str, ...], str] = {}
    data = _merge(data, _env_overrides(environ, env_names))
    if overrides:
        data = _merge(data, overrides)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, lines, source, env_names)) from exc
    _check_calling_times(cfg, lines, source, env_names)
    return cfg


_SPEC_KEY_RE = re.compile(r"^(\w+)(?:\.(\w+))?(?:\[(\d+)\])?:")
_UNKNOWN_KEY_RE = re.compile(r"unknown key '([^']*)'")


def _check_calling_times(
    cfg: Config, lines: dict[tuple[str, ...], int], source: str, env_names: Mapping[tuple[str, ...], str]
) -> None:
    """Campaign defaults (time zone, windows, holidays) and the SMS window are checked when the config loads,
    with the file and line (or the environment variable) of the bad value, not at `campaign create`."""
    from campaigns.windows import CallingWindows, WindowSpecError

    checks: list[tuple[tuple[str, ...], Any]] = [
        (("campaign",), lambda: CallingWindows.parse(cfg.campaign.windows, cfg.campaign.holidays, cfg.campaign.timezone)),
        (("sms",), lambda: CallingWindows.parse({"daily": [cfg.sms.window]})),
    ]
    for section, check in checks:
        try:
            check()
        except WindowSpecError as exc:
            msg = str(exc)
            path: tuple[str, ...] = section
            m = _SPEC_KEY_RE.match(msg)
            if section == ("sms",):
                path = ("sms", "window")
                msg = "sms.window: " + msg.split(": ", 1)[-1]
            elif m:
                path = (*section, *(g for g in m.groups() if g is not None))
                unknown = _UNKNOWN_KEY_RE.search(msg)
                if unknown and len(path) == 2:
                    path = (*path, unknown.group(1))
                msg = "campaign." + msg
            at = _where(path, lines, source, env_names)
            raise ConfigError(f"{at}: {msg}") from exc


def _where(
    path: tuple[str, ...], lines: dict[tuple[str, ...], int], source: str, env_names: Mapping[tuple[str, ...], str]
) -> str:
    """`file:line` of the longest known prefix of `path`, or the environment variable that set it."""
    for i in range(len(path), 0, -1):
        if path[:i] in env_names:
            return f"environment variable {env_names[path[:i]]}"
        if path[:i] in lines:
            return f"{source}:{lines[path[:i]]}"
    return source


def _check_url_password(data: Mapping[str, Any], lines: dict[tuple[str, ...], int], source: str) -> None:
    """A database password is a secret too: it must come from OUTREACH_DATABASE__URL, not from a file."""
    section = data.get("database")
    url = section.get("url") if isinstance(section, Mapping) else None
    if not isinstance(url, str):
        return
    if not url.startswith(("sqlite:", "postgresql:", "postgresql+")):
        line = lines.get(("database", "url"))
        at = f"{source}:{line}" if line else source
        raise ConfigError(f"{at}: 'database.url' {url!r}: unsupported database; use sqlite:///PATH or postgresql://HOST/NAME")
    try:
        password = urlsplit(url).password
    except ValueError:
        return  # not URL-shaped: validation and the store report it
    if password:
        line = lines.get(("database", "url"))
        at = f"{source}:{line}" if line else source
        raise ConfigError(
            f"{at}: 'database.url' carries a password, a secret that must not be stored in a file; "
            f"set {ENV_PREFIX}DATABASE__URL instead"
        )


def masked_dump(cfg: Config) -> dict[str, Any]:
    """The effective configuration as plain data, with secrets shown as '********' (or null if unset)."""

    def conv(obj: Any) -> Any:
        if isinstance(obj, BaseModel):
            return {k: conv(getattr(obj, k)) for k in type(obj).model_fields}
        if isinstance(obj, SecretStr):
            return "********" if obj.get_secret_value() else None
        if isinstance(obj, dict):
            return {k: conv(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [conv(v) for v in obj]
        return obj

    out = conv(cfg)
    out["database"]["url"] = mask_url(cfg.database.url)
    return out


def mask_url(url: str) -> str:
    """Hide a password inside a database URL."""
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception:
        return url
    return u.render_as_string(hide_password=True) if u.password else url
