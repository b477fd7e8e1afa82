"""SMS wiring: the `sms` config section turned into a gateway, reminder settings, the service's reminder
sweep and the webhook router (which the web app mounts)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from outreach.config import Config

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

    from campaigns.reminders import ReminderSettings
    from results.store import Store
    from sms.types import Gateway
    from sms.webhooks import WebhookSettings

log = logging.getLogger(__name__)


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def reminder_settings(cfg: Config) -> ReminderSettings:
    from campaigns.reminders import ReminderSettings, TemplateSpec
    from sms.dispatcher import DispatchSettings

    c = cfg.sms
    return ReminderSettings(
        timezone=c.timezone, window=c.window, sign_name=c.sign_name, hotline=c.hotline, test_sites=c.test_sites,
        second_test_after_days=c.second_test_after_days, from_arrival=c.remind_from_arrival, ring_back=c.ring_back,
        daily_cap=c.daily_cap_per_number, rate_per_s=c.rate_per_s,
        templates={name: TemplateSpec(t.body, t.code, t.notification) for name, t in c.templates.items()},
        dispatch=DispatchSettings(concurrency=c.concurrency, attempts=c.attempts, max_claims=c.max_claims,
                                  retry_later_s=c.retry_later_s, reconcile_after_s=c.reconcile_after_s),
    )


def status_callback_url(cfg: Config) -> str:
    c = cfg.sms
    if c.status_callback_url:
        return c.status_callback_url
    return f"{c.public_base_url.rstrip('/')}/sms/twilio/status" if c.public_base_url else ""


def build_gateway(cfg: Config) -> Gateway:
    """The configured gateway. Raises sms.types.SystemSmsError when its settings or secrets are missing."""
    from sms.gateways import AliyunGateway, DryRunGateway, TwilioGateway

    c = cfg.sms
    if c.gateway == "twilio":
        return TwilioGateway(
            c.twilio_account_sid, _secret(c.twilio_auth_token), from_number=c.from_number,
            messaging_service_sid=c.messaging_service_sid, status_callback=status_callback_url(cfg),
            base_url=c.twilio_base_url, timeout_s=c.timeout_s,
        )
    if c.gateway == "aliyun":
        return AliyunGateway(
            _secret(c.aliyun_access_key_id), _secret(c.aliyun_access_key_secret), sign_name=c.sign_name,
            endpoint=c.aliyun_endpoint, protocol=c.aliyun_protocol, timeout_s=c.timeout_s,
        )
    return DryRunGateway()


def webhook_settings(cfg: Config) -> WebhookSettings:
    from sms.webhooks import WebhookSettings

    c = cfg.sms
    return WebhookSettings(twilio_auth_token=_secret(c.twilio_auth_token), aliyun_token=_secret(c.aliyun_callback_token),
                           public_base_url=c.public_base_url)


def sms_router(cfg: Config, store: Store) -> APIRouter:
    """The webhook router for `outreach serve` (`app.include_router(sms_router(cfg, store))`)."""
    from campaigns.reminders import StoreEvents
    from outreach.commands.campaign import build_nlu
    from sms.webhooks import make_router

    return make_router(StoreEvents(store, build_nlu(cfg)), webhook_settings(cfg))


def sms_app(cfg: Config, store: Store) -> FastAPI:
    from campaigns.reminders import StoreEvents
    from outreach.commands.campaign import build_nlu
    from sms.webhooks import create_app

    return create_app(StoreEvents(store, build_nlu(cfg)), webhook_settings(cfg))


def build_reminder_sweep(cfg: Config, store: Store) -> Callable[[dt.datetime], Awaitable[int] | int]:
    """The `outreach run` service's reminder job: plan what is needed, send what is due."""
    from campaigns.reminders import make_dispatcher, sweep
    from sms.dispatcher import DispatchPaused
    from sms.types import SmsError

    settings = reminder_settings(cfg)
    try:
        gateway = build_gateway(cfg)
    except SmsError as exc:
        log.error("SMS reminders disabled: %s", exc)

        def disabled(now: dt.datetime) -> int:
            return 0

        return disabled
    dispatcher = make_dispatcher(store, gateway, settings)

    async def run(now: dt.datetime) -> int:
        try:
            stats = await sweep(store, settings, dispatcher, now)
        except DispatchPaused as exc:
            log.error("%s", exc)
            return 0
        return stats.sent

    return run
