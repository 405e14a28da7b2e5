"""per-user rate limit overrides

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-03 12:45:00

Two nullable columns on users: a user's own generate and request budgets per minute
(`kensa-gql users set-limits`). NULL means the gateway's defaults (KENSA_RATE_LIMIT_*).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN (nullable, no default): no table rebuild on SQLite.
    op.add_column('users', sa.Column('generate_per_minute', sa.Integer(), nullable=True))
    op.add_column('users', sa.Column('requests_per_minute', sa.Integer(), nullable=True))


def downgrade() -> None:
    # No index or constraint on them: a plain DROP COLUMN (SQLite >= 3.35), no table rebuild.
    op.drop_column('users', 'requests_per_minute')
    op.drop_column('users', 'generate_per_minute')
