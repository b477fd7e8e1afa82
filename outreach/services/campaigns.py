"""Campaign use cases: create (script, windows and retry policy checked first), start, pause, resume,
cancel (start and resume refuse a voice campaign whose prompts are not rendered)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from campaigns.engine import CampaignPrepareError
from campaigns.policy import PolicyError, RetryPolicy
from campaigns.service import ScriptLoadError, campaign_script, file_sha256, read_script, resolve_script
from campaigns.windows import CallingWindows, WindowSpecError
from dialogs.nlu.types import Nlu
from outreach.config import Config, script_vars
from outreach.services import ServiceError
from results import campaigns as db
from results.limits import CAMPAIGN_NAME_MAX, COMMUNITY_MAX, SOURCE_FILE_MAX, TAG_MAX, first_problem
from results.store import Store

SIMULATION_RATES = ("answer_rate", "no_answer_rate", "busy_rate", "congestion_rate", "invalid_rate")

STATE_ZH = {"draft": "草稿", "running": "进行中", "paused": "已暂停", "completed": "已完成", "cancelled": "已取消"}


def campaign_defaults(config: Config) -> dict[str, Any]:
    """The campaign section as stored on a new campaign (time zone, windows, holidays, pacing, retry)."""
    c = config.campaign
    return {
        "timezone": c.timezone,
        "windows": {k: list(v) for k, v in c.windows.items()},
        "holidays": list(c.holidays),
        "pacing": c.pacing.model_dump(),
        "retry_policy": c.retry.model_dump(),
    }


def simulation_rates(config: Config) -> dict[str, float]:
    return {k: float(getattr(config.simulation, k)) for k in SIMULATION_RATES}


def build_nlu(config: Config) -> Nlu:
    """The configured NLU (`dialogs.nlu.make_nlu`)."""
    from dialogs.nlu import make_nlu

    return make_nlu(config.nlu)


def parse_windows(values: Sequence[str]) -> dict[str, list[str]]:
    """`daily=09:00-12:00,14:00-20:00`, `sun=` -> {"daily": [...], "sun": []}."""
    out: dict[str, list[str]] = {}
    for v in values:
        if "=" not in v:
            raise ServiceError(
                f"--window {v!r}: use DAY=HH:MM-HH:MM[,HH:MM-HH:MM] with DAY daily or mon..sun",
                zh=f"呼叫时段“{v}”格式不对：请写成 daily=09:00-12:00,14:00-20:00（daily 或 mon..sun）",
            )
        key, ranges = v.split("=", 1)
        out[key.strip().lower()] = [r.strip() for r in ranges.split(",") if r.strip()]
    return out


@dataclass(slots=True)
class CampaignSpec:
    """What a user asks for; None and empty fields take the configuration's defaults."""

    name: str
    script: str | None = None
    source_files: Sequence[str] = ()
    communities: Sequence[str] = ()
    tags: Sequence[str] = ()
    timezone: str | None = None
    windows: Mapping[str, list[str]] | None = None
    holidays: Sequence[str] = ()
    max_concurrent: int | None = None
    cps: float | None = None
    max_attempts: int | None = None
    max_per_day: int | None = None


@dataclass(slots=True)
class PreparedCampaign:
    """A checked campaign definition, ready to be stored (or rehearsed)."""

    name: str
    script_path: str
    timezone: str
    windows: dict[str, list[str]]
    holidays: list[str]
    pacing: dict[str, Any]
    retry_policy: dict[str, Any]
    source_files: list[str] = field(default_factory=list)
    communities: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


def prepare_campaign(config: Config, spec: CampaignSpec) -> PreparedCampaign:
    """Check the script, windows and retry policy of `spec` and fill in the defaults.

    Raises:
        ServiceError: the script is unreadable or invalid, a window or the policy is wrong.
    """
    problem = first_problem(
        ("campaign name", spec.name, CAMPAIGN_NAME_MAX), ("--community", spec.communities, COMMUNITY_MAX),
        ("--tag", spec.tags, TAG_MAX), ("--file", spec.source_files, SOURCE_FILE_MAX),
    )
    if problem:  # the same limits on SQLite and PostgreSQL, before anything reaches the database
        raise ServiceError(problem, zh=f"活动设置无效：{problem}")
    defaults = campaign_defaults(config)
    script_path = resolve_script(spec.script or config.campaign.script)
    from dialogs.script import ScriptError, load_script

    try:
        load_script(script_path)
    except ScriptError as exc:
        raise ServiceError(f"script {script_path} is not usable:\n{exc}", zh=f"话术脚本 {script_path} 不可用：{exc}") from exc
    except OSError as exc:
        raise ServiceError(f"cannot read script {script_path}: {exc}",
                           zh=f"无法读取话术脚本 {script_path}：{exc.strerror or exc}") from exc
    windows = {k: list(v) for k, v in spec.windows.items()} if spec.windows else defaults["windows"]
    holidays = list(spec.holidays) or defaults["holidays"]
    tz = spec.timezone or defaults["timezone"]
    retry = dict(defaults["retry_policy"])
    if spec.max_attempts is not None:
        retry["max_attempts_total"] = spec.max_attempts
        retry["max_attempts_per_day"] = min(retry["max_attempts_per_day"], spec.max_attempts)
    if spec.max_per_day is not None:
        retry["max_attempts_per_day"] = spec.max_per_day
    pacing = dict(defaults["pacing"])
    if spec.max_concurrent is not None:
        pacing["max_concurrent_calls"] = spec.max_concurrent
    if spec.cps is not None:
        pacing["calls_per_second"] = spec.cps
    try:
        CallingWindows.parse(windows, holidays, tz)
        RetryPolicy.from_mapping(retry)
    except (WindowSpecError, PolicyError) as exc:
        raise ServiceError(str(exc), zh=f"呼叫时段或重呼规则有误：{exc}") from exc
    return PreparedCampaign(
        name=spec.name.strip(), script_path=script_path, timezone=tz, windows=windows, holidays=holidays,
        pacing=pacing, retry_policy=retry, source_files=list(spec.source_files),
        communities=list(spec.communities), tags=list(spec.tags),
    )


def store_campaign(store: Store, p: PreparedCampaign, *, actor: str, now: dt.datetime | None = None) -> tuple[db.CampaignInfo, int]:
    """Store a prepared campaign as a draft; returns it and its number of contacts."""
    try:
        return db.create_campaign(
            store, name=p.name, script_path=p.script_path, script_sha256=file_sha256(p.script_path),
            timezone=p.timezone, windows=p.windows, holidays=p.holidays, pacing=p.pacing,
            retry_policy=p.retry_policy, source_files=p.source_files, communities=p.communities, tags=p.tags,
            now=now or _now(), actor=actor, script_text=read_script(p.script_path),
        )
    except ScriptLoadError as exc:
        raise ServiceError(str(exc), zh=f"无法读取话术脚本：{exc}") from exc
    except db.CampaignError as exc:
        msg = str(exc)
        if "already exists" in msg:
            zh = f"已有名为“{p.name}”的活动，请换一个名称"
        elif "no resident" in msg:
            zh = f"没有符合条件的居民（来源文件、社区、标签）：{msg}"
        elif "needs a name" in msg:
            zh = "请填写活动名称"
        else:
            zh = f"无法创建活动：{msg}"
        raise ServiceError(msg, zh=zh) from exc


def create_campaign(config: Config, store: Store, spec: CampaignSpec, *, actor: str) -> tuple[db.CampaignInfo, int]:
    return store_campaign(store, prepare_campaign(config, spec), actor=actor)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def get_campaign(store: Store, name: str) -> db.CampaignInfo:
    try:
        return db.get_campaign(store, name)
    except db.CampaignError as exc:
        raise ServiceError(str(exc), zh=f"没有名为“{name}”的活动") from exc


def missing_prompts(config: Config, script_path: str) -> tuple[list[str], bool]:
    """The script's fixed prompts missing from the TTS cache, and whether the offline voice covers them."""
    from dialogs.script import load_script
    from tts.cache import check_prompts, static_prompts

    script = load_script(resolve_script(script_path)).with_vars(script_vars(config))
    check = check_prompts(config.tts, static_prompts(script))
    return list(check.missing), check.fallback


def require_prompts(config: Config, store: Store, name: str) -> None:
    """On a voice backend, refuse to (re)start a campaign whose script prompts are not in the TTS cache.

    The simulated network talks in text, so it needs no audio. Prompts templated with contact fields
    ({name}) are rendered per contact in batch before their calls; the fixed ones must be rendered
    beforehand (`outreach prompts render --script FILE`) unless tts.fallback_offline allows espeak-ng.
    """
    if config.telephony.backend == "simulated":
        return
    from dialogs.script import ScriptError, load_script
    from tts.cache import PromptMissingError, static_prompts
    from tts.cache import require_prompts as require

    info = get_campaign(store, name)
    try:
        script = campaign_script(info) if info.script_text else load_script(resolve_script(info.script_path))
        script = script.with_vars(script_vars(config))
    except CampaignPrepareError as exc:
        raise ServiceError(f"campaign {name!r}: {exc}", zh=f"活动“{name}”的话术脚本不可用：{exc}") from exc
    except ScriptError as exc:
        raise ServiceError(f"campaign {name!r}: {exc}", zh=f"活动“{name}”的话术脚本不可用：{exc}") from exc
    try:
        require(config.tts, static_prompts(script))
    except PromptMissingError as exc:
        raise ServiceError(f"campaign {name!r} cannot start: {exc}",
                           zh=f"活动“{name}”不能开始：有语音提示尚未合成（{exc}）") from exc


_VERB_ZH = {"running": "开始/继续", "paused": "暂停", "cancelled": "取消", "completed": "完成"}


def check_script(store: Store, name: str) -> str | None:
    """Refuse to (re)start a campaign whose stored script does not load (a permanent fault, found before
    the first call). Returns the script text to snapshot for campaigns created before snapshots."""
    info = get_campaign(store, name)
    text = None
    if not info.script_text:
        try:
            text = read_script(info.script_path)
        except ScriptLoadError as exc:
            raise ServiceError(f"campaign {name!r} cannot start: {exc}",
                               zh=f"活动“{name}”不能开始：无法读取话术脚本（{exc}）") from exc
        info = dataclasses.replace(info, script_text=text)
    try:
        campaign_script(info)
    except CampaignPrepareError as exc:
        raise ServiceError(f"campaign {name!r} cannot start: {exc}",
                           zh=f"活动“{name}”不能开始：话术脚本不可用（{exc}）") from exc
    return text


def _transition(
    store: Store, name: str, state: str, from_states: list[str] | None, actor: str, script_text: str | None = None
) -> db.CampaignInfo:
    try:
        return db.set_state(store, name, state, now=_now(), actor=actor, from_states=from_states,
                            script_text=script_text)
    except db.CampaignNotFound as exc:
        raise ServiceError(str(exc), zh=f"没有名为“{name}”的活动") from exc
    except db.CampaignError as exc:
        try:
            current = STATE_ZH.get(db.get_campaign(store, name).state, "")
        except db.CampaignError:
            current = ""
        raise ServiceError(str(exc), zh=f"活动“{name}”当前{current}，不能{_VERB_ZH.get(state, state)}") from exc


def start_campaign(config: Config, store: Store, name: str, *, actor: str) -> db.CampaignInfo:
    """Start a draft campaign (calls begin when `outreach run` is running and a window is open)."""
    text = check_script(store, name)
    require_prompts(config, store, name)
    return _transition(store, name, "running", ["draft"], actor, text)


def resume_campaign(config: Config, store: Store, name: str, *, actor: str) -> db.CampaignInfo:
    text = check_script(store, name)
    require_prompts(config, store, name)
    return _transition(store, name, "running", ["paused"], actor, text)


def pause_campaign(store: Store, name: str, *, actor: str) -> db.CampaignInfo:
    return _transition(store, name, "paused", None, actor)


def cancel_campaign(store: Store, name: str, *, actor: str) -> db.CampaignInfo:
    return _transition(store, name, "cancelled", None, actor)


@dataclass(slots=True)
class SettingsEdit:
    """What staff change on an existing campaign; None (or empty) leaves a setting as it is."""

    windows: Mapping[str, list[str]] | None = None
    holidays: Sequence[str] | None = None
    max_concurrent: int | None = None
    cps: float | None = None
    max_attempts: int | None = None
    max_per_day: int | None = None

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.windows, self.holidays, self.max_concurrent, self.cps,
                                       self.max_attempts, self.max_per_day))


def update_campaign_settings(store: Store, name: str, edit: SettingsEdit, *, actor: str) -> db.CampaignInfo:
    """Change a campaign's calling windows, holidays, pacing or attempt limits. The result is checked as a
    whole before it is stored; running engines apply it at their next tick, without a restart.

    Raises:
        ServiceError: nothing to change, an unknown or finished campaign, a window or limit that is wrong.
    """
    if edit.empty:
        raise ServiceError("nothing to change: give --window, --holiday, --max-concurrent, --cps, --max-attempts "
                           "or --max-attempts-per-day", zh="没有要修改的设置")
    info = get_campaign(store, name)
    windows = {k: list(v) for k, v in edit.windows.items()} if edit.windows is not None else None
    retry: dict[str, Any] = {}
    if edit.max_attempts is not None:
        retry["max_attempts_total"] = edit.max_attempts
        per_day = int(info.retry_policy.get("max_attempts_per_day", RetryPolicy().max_attempts_per_day))
        retry["max_attempts_per_day"] = min(per_day, edit.max_attempts)
    if edit.max_per_day is not None:
        retry["max_attempts_per_day"] = edit.max_per_day
    pacing: dict[str, Any] = {}
    if edit.max_concurrent is not None:
        if edit.max_concurrent < 1:
            raise ServiceError(f"max concurrent calls {edit.max_concurrent}: must be at least 1",
                               zh="最大并发呼叫数至少为 1")
        pacing["max_concurrent_calls"] = edit.max_concurrent
    if edit.cps is not None:
        if not edit.cps > 0:
            raise ServiceError(f"calls per second {edit.cps}: must be above 0", zh="每秒呼叫数必须大于 0")
        pacing["calls_per_second"] = edit.cps
    try:
        CallingWindows.parse(windows if windows is not None else info.windows,
                             list(edit.holidays) if edit.holidays is not None else info.holidays, info.timezone)
        RetryPolicy.from_mapping({**info.retry_policy, **retry})
    except (WindowSpecError, PolicyError) as exc:
        raise ServiceError(f"campaign {name!r}: {exc}", zh=f"呼叫时段或重呼规则有误：{exc}") from exc
    try:
        return db.update_settings(
            store, name, now=_now(), actor=actor, windows=windows,
            holidays=list(edit.holidays) if edit.holidays is not None else None,
            pacing=pacing or None, retry_policy=retry or None,
        )
    except db.CampaignNotFound as exc:
        raise ServiceError(str(exc), zh=f"没有名为“{name}”的活动") from exc
    except db.CampaignError as exc:
        raise ServiceError(str(exc), zh=f"活动“{name}”已结束，不能再修改设置") from exc
