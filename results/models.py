"""SQLAlchemy 2 models of the results store. `results` is the only package that writes SQL.

All timestamps are stored as UTC (naive in the database, aware in Python) through `UtcDateTime`,
so SQLite and PostgreSQL behave the same.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in Python, naive UTC in the database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to a UTC column; attach a time zone")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UtcDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class CampaignState(enum.StrEnum):
    draft = "draft"
    running = "running"
    paused = "paused"
    completed = "completed"
    cancelled = "cancelled"


class ContactState(enum.StrEnum):
    """Per-contact state inside a campaign."""

    pending = "pending"  # waiting for its next attempt (next_attempt_at)
    dialing = "dialing"  # an attempt is in flight (claimed by a worker)
    done = "done"  # finished: final_outcome says how
    skipped = "skipped"  # never dialed: do-not-call, invalid, campaign cancelled


class Resident(Base):
    __tablename__ = "residents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    phone: Mapped[str] = mapped_column(String(20), unique=True)  # E.164
    community: Mapped[str] = mapped_column(String(100), default="", index=True)
    address: Mapped[str] = mapped_column(String(300), default="")
    national_id: Mapped[str | None] = mapped_column(String(18), nullable=True)
    arrival_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    source_file: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    script_path: Mapped[str] = mapped_column(String(300))
    script_sha256: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(16), default=CampaignState.draft.value, index=True)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    windows: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    holidays: Mapped[list[Any]] = mapped_column(JSON, default=list)
    pacing: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    retry_policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    contact_filter: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # The script as it was when the campaign was created/started: workers never read a file path.
    script_text: Mapped[str] = mapped_column(Text, default="")
    trunk: Mapped[str] = mapped_column(String(64), default="default")
    # The campaign's own pacing across every worker: the earliest start of its next call.
    next_slot_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Why the dialer paused it (a permanent fault such as a broken script); empty otherwise.
    paused_reason: Mapped[str] = mapped_column(Text, default="")

    contacts: Mapped[list[CampaignContact]] = relationship(back_populates="campaign")


class CampaignContact(Base):
    __tablename__ = "campaign_contacts"
    __table_args__ = (
        UniqueConstraint("campaign_id", "resident_id"),
        # The dialer's query: due pending contacts of a running campaign, oldest due first.
        Index("ix_campaign_contacts_due", "campaign_id", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=ContactState.pending.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    attempts_today: Mapped[int] = mapped_column(Integer, default=0)
    attempts_day: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    final_outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)

    campaign: Mapped[Campaign] = relationship(back_populates="contacts")
    resident: Mapped[Resident] = relationship()


class CallAttempt(Base):
    """One dial attempt, CDR-like."""

    __tablename__ = "call_attempts"
    __table_args__ = (Index("ix_call_attempts_campaign_started", "campaign_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("campaign_contacts.id", ondelete="CASCADE"), index=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[str] = mapped_column(String(64), unique=True)  # our uuid: AMI ChannelId / AudioSocket
    attempt_no: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    answered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # dialing, answered, no_answer, busy, congestion, failed, invalid_number, hung_up_early, interrupted
    outcome: Mapped[str] = mapped_column(String(32), default="dialing", index=True)
    dialog_outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    hangup_cause: Mapped[str | None] = mapped_column(String(64), nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    turns: Mapped[list[Any]] = mapped_column(JSON, default=list)


class ScreeningRecord(Base):
    __tablename__ = "screening_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("call_attempts.id", ondelete="CASCADE"), unique=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    outcome: Mapped[str] = mapped_column(String(32))
    risk_level: Mapped[str] = mapped_column(String(16), default="none", index=True)  # none, flagged, high
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # field -> {"value", "raw", "confidence", "nlu", "uncertain", "intent", "audio"}
    answers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    uncertain: Mapped[list[Any]] = mapped_column(JSON, default=list)
    reminder_needed: Mapped[bool] = mapped_column(Boolean, default=False)
    callback_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class SmsMessage(Base):
    """One text to one resident. The row is committed in `sending` before the provider is called, so a
    crash between the call and the store is found (and reconciled with the provider) on restart."""

    __tablename__ = "sms_messages"
    __table_args__ = (
        UniqueConstraint("dedupe_key"),
        Index("ix_sms_messages_state_scheduled", "state", "scheduled_for"),
        Index("ix_sms_messages_phone_sent", "to_phone", "sent_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))  # second_test_reminder, ring_back
    dedupe_key: Mapped[str] = mapped_column(String(128))  # one message per purpose: never planned twice
    out_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)  # our key at the provider
    to_phone: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    template: Mapped[str] = mapped_column(String(64), default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    segments: Mapped[int] = mapped_column(Integer, default=1)
    gateway: Mapped[str] = mapped_column(String(16), default="")
    # queued, sending, accepted, sent, delivered, undelivered, failed, cancelled (sms.types.STATES)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    provider_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    provider_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)  # Chinese, for staff
    tries: Mapped[int] = mapped_column(Integer, default=0)
    scheduled_for: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    sending_since: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class SmsEvent(Base):
    """A delivery receipt as received (deduplicated); applied to its message once that is known."""

    __tablename__ = "sms_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe: Mapped[str] = mapped_column(String(128), unique=True)
    provider: Mapped[str] = mapped_column(String(16))
    provider_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    out_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    state: Mapped[str] = mapped_column(String(16))
    provider_status: Mapped[str] = mapped_column(String(32), default="")
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("sms_messages.id", ondelete="CASCADE"), nullable=True)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class SmsReply(Base):
    """A text a resident sent us, with what it was understood as."""

    __tablename__ = "sms_replies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe: Mapped[str] = mapped_column(String(128), unique=True)
    provider: Mapped[str] = mapped_column(String(16))
    phone: Mapped[str] = mapped_column(String(20), index=True)
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), nullable=True,
                                                    index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("sms_messages.id", ondelete="SET NULL"), nullable=True)
    text: Mapped[str] = mapped_column(Text)
    # opt_out, second_test_done (self-reported), second_test_not_done, other (to the review queue)
    intent: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class Escalation(Base):
    __tablename__ = "escalations"
    # The community worker's review queue: open items of one community, most urgent first.
    __table_args__ = (Index("ix_escalations_queue", "community", "status", "priority"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"), nullable=True)
    record_id: Mapped[int | None] = mapped_column(
        ForeignKey("screening_records.id", ondelete="SET NULL"), nullable=True
    )
    # flagged, high_risk, human_requested, callback_requested, unreachable, uncertain, opted_out,
    # sms_undeliverable, sms_reply
    kind: Mapped[str] = mapped_column(String(32))
    community: Mapped[str] = mapped_column(String(100), default="")
    priority: Mapped[int] = mapped_column(Integer, default=2)  # 1 = most urgent
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, in_progress, closed
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    notes: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str | None] = mapped_column(String(64), nullable=True)
    assigned_to: Mapped[str | None] = mapped_column(String(100), nullable=True)
    due_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class DoNotCall(Base):
    __tablename__ = "do_not_call"

    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    reason: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(String(64), default="")  # opt_out, staff, import
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Worker(Base):
    """A running (or finished) `outreach run` process: its heartbeat shows it is alive."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)  # host:pid:random, or --worker
    host: Mapped[str] = mapped_column(String(100), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="running")  # running, stopped
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)  # wall clock
    lines_in_use: Mapped[int] = mapped_column(Integer, default=0)
    # The worker's status board per campaign (lines, calls/min, answered, breaker), for the web console.
    status: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Trunk(Base):
    """A trunk's limits and shared state: the calls-per-second bucket and the circuit breaker.

    Every worker claims calls under a lock on these rows, so the limits hold in total."""

    __tablename__ = "trunks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(200), default="")
    max_channels: Mapped[int] = mapped_column(Integer, default=30)
    calls_per_second: Mapped[float] = mapped_column(Float, default=2.0)
    next_slot_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    breaker_state: Mapped[str] = mapped_column(String(16), default="closed")  # closed, open, half_open
    breaker_reason: Mapped[str] = mapped_column(Text, default="")
    breaker_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    breaker_trips: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class StoreMeta(Base):
    """Facts about the store itself, e.g. kind=simulation for a store the simulated network wrote."""

    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200), default="")


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100), default="")
    action: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class User(Base):
    """An account of the web console: admin, staff (all campaigns) or worker (only its communities)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # admin, staff, worker
    communities: Mapped[list[Any]] = mapped_column(JSON, default=list)  # a worker's communities
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class WebSession(Base):
    """A logged-in browser. Only the SHA-256 of the cookie's token is stored."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)


class LoginThrottle(Base):
    """Failed logins per account name (known or not): backoff, then lockout."""

    __tablename__ = "login_throttle"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    blocked_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class Callback(Base):
    """What a community worker did about an escalation: a call back or a visit, and its result."""

    __tablename__ = "callbacks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    escalation_id: Mapped[int] = mapped_column(ForeignKey("escalations.id", ondelete="CASCADE"), index=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    worker: Mapped[str] = mapped_column(String(100))
    reached: Mapped[bool] = mapped_column(Boolean)
    action: Mapped[str] = mapped_column(String(32), default="")  # visit, hospital, tested, none
    notes: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
