"""tasks.traceparent: the trace a task's run continues

Revision ID: 0007
Revises: 0002 (re-chain onto the newest revision on main at merge: 0006 is taken there)
Create Date: 2026-12-03 13:00:00

With tracing on, a generate request stores its W3C traceparent with the task it creates, so the
worker that runs the task (in any process) continues the request's trace. Nullable: tasks made
with tracing off, or before this revision, start a trace of their own.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("traceparent", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("traceparent")
