"""The rehearsal use case: run a campaign's script and list on the simulated network in a throw-away store
and forecast it (campaigns.rehearsal), plus the prompts missing from the TTS cache."""

from __future__ import annotations

from campaigns.rehearsal import Forecast, RehearsalSettings, rehearse
from campaigns.service import ScriptLoadError
from dialer.base import TelephonyError
from dialogs.script import ScriptError
from outreach.config import Config
from outreach.services import ServiceError
from outreach.services.campaigns import build_nlu, missing_prompts, simulation_rates
from results import campaigns as db
from results.store import Store


def rehearse_campaign(config: Config, store: Store, name: str, *, sample_max: int = 2000) -> Forecast:
    settings = RehearsalSettings(
        simulation_rates=simulation_rates(config), seed=config.simulation.seed, nlu=build_nlu(config),
        low_confidence=config.nlu.low_confidence, caller_id=config.telephony.caller_id,
        originate_timeout_s=config.telephony.originate_timeout_s, sample_max=sample_max,
    )
    try:
        forecast = rehearse(store, name, settings)
    except db.CampaignNotFound as exc:
        raise ServiceError(str(exc), zh=f"没有名为“{name}”的活动") from exc
    except (db.CampaignError, ScriptLoadError, TelephonyError) as exc:
        raise ServiceError(str(exc), zh=f"演练失败：{exc}") from exc
    try:
        forecast.missing_prompts, forecast.prompts_fallback = missing_prompts(config, db.get_campaign(store, name).script_path)
    except (ScriptError, OSError) as exc:  # the forecast stands; the prompt check names what failed
        forecast.missing_prompts, forecast.prompts_fallback = [f"（无法检查语音提示：{exc}）"], False
    return forecast
