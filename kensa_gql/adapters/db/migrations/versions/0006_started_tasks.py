"""an index of started tasks, for the per-user cap on running videos

Revision ID: 0006
Revises: 0002
Create Date: 2026-12-03 13:00:00

The claim counts each user's started tasks (``attempts > 0``) to hold them under
KENSA_MAX_ACTIVE_VIDEOS_PER_USER. A partial index holds exactly those rows, so the count reads
the running videos only, never the (possibly long) queue of waiting ones.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_STARTED = sa.text("attempts > 0")


def upgrade() -> None:
    op.create_index('ix_tasks_started', 'tasks', ['video_id'], unique=False,
                    sqlite_where=_STARTED, postgresql_where=_STARTED)


def downgrade() -> None:
    op.drop_index('ix_tasks_started', table_name='tasks')
