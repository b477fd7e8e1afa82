"""dialer core: workers, trunks, store meta; campaign script snapshot, trunk, pacing slot, pause reason

Revision ID: 0004_core
Revises: 0003_web
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import results.models

revision = "0004_core"
down_revision = "0003_web"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=120), nullable=False),
        sa.Column("host", sa.String(length=100), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", results.models.UtcDateTime(), nullable=False),
        sa.Column("heartbeat_at", results.models.UtcDateTime(), nullable=False),
        sa.Column("lines_in_use", sa.Integer(), nullable=False),
        sa.Column("status", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_table(
        "trunks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=200), nullable=False),
        sa.Column("max_channels", sa.Integer(), nullable=False),
        sa.Column("calls_per_second", sa.Float(), nullable=False),
        sa.Column("next_slot_at", results.models.UtcDateTime(), nullable=True),
        sa.Column("breaker_state", sa.String(length=16), nullable=False),
        sa.Column("breaker_reason", sa.Text(), nullable=False),
        sa.Column("breaker_until", results.models.UtcDateTime(), nullable=True),
        sa.Column("breaker_trips", sa.Integer(), nullable=False),
        sa.Column("updated_at", results.models.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_trunks")),
    )
    op.create_table(
        "store_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_store_meta")),
    )
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("script_text", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("trunk", sa.String(length=64), nullable=False, server_default="default"))
        batch.add_column(sa.Column("next_slot_at", results.models.UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("paused_reason", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("paused_reason")
        batch.drop_column("next_slot_at")
        batch.drop_column("trunk")
        batch.drop_column("script_text")
    op.drop_table("store_meta")
    op.drop_table("trunks")
    op.drop_table("workers")
