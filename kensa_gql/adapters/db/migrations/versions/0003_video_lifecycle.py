"""videos: why a video failed (failure_code) and the deadline its request set (deadline_at_ms)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 12:40:00

Cancel, deadlines and the failure taxonomy (issue 12). Both columns are nullable: existing videos
have no failure code (GraphQL shows INTERNAL for an old FAILED one) and no deadline. The partial
index holds only videos with a deadline that are still in flight, so the sweep that expires them
reads nothing else.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# Self-contained on purpose: a migration must not change when the application code does.
_DUE = sa.text("deadline_at_ms IS NOT NULL AND status IN ('PENDING', 'GENERATING', 'UPLOADING')")


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN (nullable, no default): no table rebuild on SQLite.
    op.add_column('videos', sa.Column('failure_code', sa.String(length=32), nullable=True))
    op.add_column('videos', sa.Column('deadline_at_ms', sa.BigInteger(), nullable=True))
    op.create_index('ix_videos_due_deadline', 'videos', ['deadline_at_ms'], unique=False,
                    sqlite_where=_DUE, postgresql_where=_DUE)


def downgrade() -> None:
    op.drop_index('ix_videos_due_deadline', table_name='videos')
    op.drop_column('videos', 'deadline_at_ms')
    op.drop_column('videos', 'failure_code')
