"""outbound webhooks: endpoints, the account's default secret, per-video overrides, deliveries

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-03 12:40:00

New tables only: no existing row changes, so it can run while the old gateway serves.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_PENDING = sa.text("status = 'PENDING'")


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        'webhook_endpoints',
        sa.Column('id', _id(), primary_key=True, autoincrement=True),
        sa.Column('public_id', sa.String(40), nullable=False),
        sa.Column('user_id', _id(), sa.ForeignKey('users.id', name='fk_webhook_endpoints_user_id_users'),
                  nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('events', sa.Text(), nullable=False),
        sa.Column('secret', sa.String(128), nullable=False),
        sa.Column('previous_secret', sa.String(128)),
        sa.Column('previous_secret_until_ms', sa.BigInteger()),
        sa.Column('disabled_at_ms', sa.BigInteger()),
        sa.Column('disabled_reason', sa.Text()),
        sa.Column('failing_since_ms', sa.BigInteger()),
        sa.Column('created_at_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name='pk_webhook_endpoints'),
        sa.UniqueConstraint('public_id', name='uq_webhook_endpoints_public_id'),
    )
    op.create_index('ix_webhook_endpoints_user_id', 'webhook_endpoints', ['user_id'])
    op.create_table(
        'webhook_secrets',
        sa.Column('user_id', _id(), sa.ForeignKey('users.id', name='fk_webhook_secrets_user_id_users'),
                  nullable=False),
        sa.Column('secret', sa.String(128), nullable=False),
        sa.Column('created_at_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('user_id', name='pk_webhook_secrets'),
    )
    op.create_table(
        'video_webhooks',
        sa.Column('video_id', _id(), sa.ForeignKey('videos.id', name='fk_video_webhooks_video_id_videos'),
                  nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('events', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('video_id', name='pk_video_webhooks'),
    )
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', _id(), primary_key=True, autoincrement=True),
        sa.Column('event_id', sa.String(40), nullable=False),
        sa.Column('user_id', _id(), sa.ForeignKey('users.id', name='fk_webhook_deliveries_user_id_users'),
                  nullable=False),
        sa.Column('endpoint_id', _id(),
                  sa.ForeignKey('webhook_endpoints.id', name='fk_webhook_deliveries_endpoint_id_webhook_endpoints',
                                ondelete='SET NULL')),
        sa.Column('video_id', _id(), sa.ForeignKey('videos.id', name='fk_webhook_deliveries_video_id_videos')),
        sa.Column('to_endpoint', sa.Boolean(), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('event_type', sa.String(32), nullable=False),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
        sa.Column('next_attempt_at_ms', sa.BigInteger()),
        sa.Column('lease_owner', sa.String(64)),
        sa.Column('lease_until_ms', sa.BigInteger()),
        sa.Column('last_status_code', sa.Integer()),
        sa.Column('last_response', sa.Text()),
        sa.Column('last_error', sa.Text()),
        sa.Column('created_at_ms', sa.BigInteger(), nullable=False),
        sa.Column('delivered_at_ms', sa.BigInteger()),
        sa.PrimaryKeyConstraint('id', name='pk_webhook_deliveries'),
        sa.UniqueConstraint('event_id', name='uq_webhook_deliveries_event_id'),
    )
    op.create_index('ix_webhook_deliveries_due', 'webhook_deliveries', ['next_attempt_at_ms'],
                    sqlite_where=_PENDING, postgresql_where=_PENDING)
    op.create_index('ix_webhook_deliveries_user', 'webhook_deliveries', ['user_id', 'id'])
    op.create_index('ix_webhook_deliveries_video', 'webhook_deliveries', ['video_id', 'event_type', 'created_at_ms'])


def downgrade() -> None:
    op.drop_table('webhook_deliveries')
    op.drop_table('video_webhooks')
    op.drop_table('webhook_secrets')
    op.drop_table('webhook_endpoints')
