"""each user's count of live videos; the list index holds live videos only

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 16:30:00

The video list's total was a COUNT(*) over the owner's rows (~200 us for 2,000 videos on SQLite)
on every list request. users.live_videos holds it instead, kept by the unit of work in the same
transaction as every video insert and soft delete. The list index becomes partial (live rows
only), so a page and its OFFSET never visit a soft-deleted row.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_LIVE = sa.text("deleted_at_ms IS NULL")

# Self-contained on purpose: a migration must not change when the application code does.
_BACKFILL = sa.text(
    "UPDATE users SET live_videos = "
    "(SELECT count(*) FROM videos WHERE videos.user_id = users.id AND videos.deleted_at_ms IS NULL)")


def upgrade() -> None:
    # Not batch mode: adding a column with a constant default is a plain ALTER TABLE on SQLite
    # too, and rebuilding users (which seven tables reference) is best avoided.
    op.add_column('users', sa.Column('live_videos', sa.BigInteger(), server_default=sa.text('0'), nullable=False))
    # Code before this revision does not keep the count: a video it wrote while the migration
    # ran would be missed, so migrate with the old gateway stopped (`serve` migrates SQLite
    # itself before it takes requests).
    op.execute(_BACKFILL)
    op.create_index('ix_videos_user_live', 'videos', ['user_id', 'created_at_ms', 'id'], unique=False,
                    sqlite_where=_LIVE, postgresql_where=_LIVE)
    op.drop_index('ix_videos_user_list', table_name='videos')


def downgrade() -> None:
    op.create_index('ix_videos_user_list', 'videos', ['user_id', 'created_at_ms', 'id'], unique=False)
    op.drop_index('ix_videos_user_live', table_name='videos')
    # SQLite has had ALTER TABLE ... DROP COLUMN since 3.35 (2021); the column has no index or
    # constraint, so no table rebuild is needed.
    op.drop_column('users', 'live_videos')
