"""The gateway interface every SMS provider implements, and the facts that flow through it.

A gateway is synchronous (the provider clients are); the dispatcher runs it in worker threads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

# Our message states, in the order they may move (`results.sms` only moves them forward):
#   queued   waiting for its send time (or for the window / the per-number cap)
#   sending  committed before the provider is called: the call may be in flight, or a crash left it
#   accepted the provider has it (Twilio queued/accepted/sending, Aliyun SendSms OK)
#   sent     handed to the carrier
#   delivered / undelivered / failed   final (the carrier's receipt, or a permanent error)
#   cancelled  never sent: the number opted out, or the reminder is no longer needed
STATES = ("queued", "sending", "accepted", "sent", "delivered", "undelivered", "failed", "cancelled")
FINAL_STATES = frozenset({"delivered", "undelivered", "failed", "cancelled"})
RANK = {"queued": 0, "sending": 1, "accepted": 2, "sent": 3, "delivered": 4, "undelivered": 4, "failed": 4,
        "cancelled": 4}

STATE_LABELS = {
    "queued": "待发送", "sending": "发送中", "accepted": "已提交", "sent": "已发出", "delivered": "已送达",
    "undelivered": "未送达", "failed": "发送失败", "cancelled": "已取消",
}


def advances(old: str, new: str) -> bool:
    """Whether a message in state `old` may move to `new` (forward only; a final state never changes)."""
    if old in FINAL_STATES:
        return False
    return RANK.get(new, -1) > RANK.get(old, -1)


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    """One text to send. `key` is our idempotency key (Aliyun OutId); `body` is the full rendered text
    (with its 【签名】); `template_code`/`params`/`sign_name` are what a template provider needs."""

    key: str
    to: str  # E.164
    body: str
    template_code: str = ""
    params: Mapping[str, str] = field(default_factory=dict)
    sign_name: str = ""


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the provider answered: its id and our state for its first status."""

    provider_id: str
    state: str  # accepted, sent or delivered (dry-run)
    provider_status: str = ""


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A delivery receipt. `dedupe` identifies this receipt (repeats are dropped)."""

    dedupe: str
    state: str
    provider_status: str
    provider_id: str = ""
    out_id: str = ""  # Aliyun reports echo our OutId
    error_code: str = ""
    error_message: str = ""
    at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A message a resident sent us (Aliyun SmsUp, Twilio inbound)."""

    dedupe: str
    phone: str  # E.164
    text: str
    received_at: dt.datetime
    provider: str


class SmsError(Exception):
    """A send did not go through. `code` is the provider's code; `explanation` is Chinese, for staff."""

    def __init__(self, code: str, message: str, explanation: str = "") -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code
        self.message = message
        self.explanation = explanation or message


class PermanentSmsError(SmsError):
    """Final for this message: never retried (invalid number, opted out at the provider, filtered, ...)."""


class TransientSmsError(SmsError):
    """Retry later. `maybe_sent`: the provider may have taken the message (timeout, 5xx, dropped
    connection), so it must be reconciled with the provider before any resend."""

    def __init__(self, code: str, message: str, explanation: str = "", *, maybe_sent: bool = False,
                 retry_after_s: float | None = None) -> None:
        super().__init__(code, message, explanation)
        self.maybe_sent = maybe_sent
        self.retry_after_s = retry_after_s


class SystemSmsError(SmsError):
    """The account or configuration is unusable (no credit, bad credentials): pause sending, charge nobody."""


class Gateway(Protocol):
    """An SMS provider."""

    name: str

    def send(self, msg: OutgoingSms) -> SendResult:
        """Submit one message. Raises PermanentSmsError, TransientSmsError or SystemSmsError."""
        ...

    def find(self, msg: OutgoingSms, since: dt.datetime) -> SendResult | None:
        """Reconcile: the provider's record of `msg` submitted at or after `since`, or None if it has
        none. Raises TransientSmsError when the provider cannot be asked now."""
        ...
