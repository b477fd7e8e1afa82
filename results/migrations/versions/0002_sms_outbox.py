"""sms outbox: message keys, provider states, receipts and replies

Revision ID: 0002_sms
Revises: 0001
Create Date: 2026-12-01 19:24:39.728650
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import results.models

revision = '0002_sms'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sms_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dedupe', sa.String(length=128), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('provider_id', sa.String(length=64), nullable=True),
    sa.Column('out_id', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('provider_status', sa.String(length=32), nullable=False),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('received_at', results.models.UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['sms_messages.id'], name=op.f('fk_sms_events_message_id_sms_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_events')),
    sa.UniqueConstraint('dedupe', name=op.f('uq_sms_events_dedupe'))
    )
    with op.batch_alter_table('sms_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sms_events_out_id'), ['out_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sms_events_provider_id'), ['provider_id'], unique=False)

    op.create_table('sms_replies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dedupe', sa.String(length=128), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('resident_id', sa.Integer(), nullable=True),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('intent', sa.String(length=32), nullable=False),
    sa.Column('received_at', results.models.UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['sms_messages.id'], name=op.f('fk_sms_replies_message_id_sms_messages'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_sms_replies_resident_id_residents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_replies')),
    sa.UniqueConstraint('dedupe', name=op.f('uq_sms_replies_dedupe'))
    )
    with op.batch_alter_table('sms_replies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sms_replies_phone'), ['phone'], unique=False)
        batch_op.create_index(batch_op.f('ix_sms_replies_resident_id'), ['resident_id'], unique=False)

    with op.batch_alter_table('sms_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('out_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('template', sa.String(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('params', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('segments', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('gateway', sa.String(length=16), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('provider_status', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('sending_since', results.models.UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column('delivered_at', results.models.UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column('created_at', results.models.UtcDateTime(), nullable=True))
        batch_op.alter_column('error_code',
               existing_type=sa.VARCHAR(length=16),
               type_=sa.String(length=64),
               existing_nullable=True)
        batch_op.create_index('ix_sms_messages_phone_sent', ['to_phone', 'sent_at'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_sms_messages_out_id'), ['out_id'])



def downgrade() -> None:
    with op.batch_alter_table('sms_messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_sms_messages_out_id'), type_='unique')
        batch_op.drop_index('ix_sms_messages_phone_sent')
        batch_op.alter_column('error_code',
               existing_type=sa.String(length=64),
               type_=sa.VARCHAR(length=16),
               existing_nullable=True)
        batch_op.drop_column('created_at')
        batch_op.drop_column('delivered_at')
        batch_op.drop_column('sending_since')
        batch_op.drop_column('provider_status')
        batch_op.drop_column('gateway')
        batch_op.drop_column('segments')
        batch_op.drop_column('params')
        batch_op.drop_column('template')
        batch_op.drop_column('out_id')

    with op.batch_alter_table('sms_replies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sms_replies_resident_id'))
        batch_op.drop_index(batch_op.f('ix_sms_replies_phone'))

    op.drop_table('sms_replies')
    with op.batch_alter_table('sms_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sms_events_provider_id'))
        batch_op.drop_index(batch_op.f('ix_sms_events_out_id'))

    op.drop_table('sms_events')
