"""The schema. Times are integer epoch milliseconds: exact, portable, and cheap to order by."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite only autoincrements INTEGER PRIMARY KEY

users = Table(
    "users", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("created_at_ms", BigInteger, nullable=False),
    # How many of the user's videos are not soft-deleted: the list's total without counting rows.
    # Kept by the unit of work in the transaction that creates or deletes a video (uow.py).
    Column("live_videos", BigInteger, nullable=False, server_default=text("0")),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False, index=True),
    Column("prefix", String(32), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("revoked_at_ms", BigInteger),
)

# One row per user; ledger operations lock it first, so they run one at a time per user.
credit_accounts = Table(
    "credit_accounts", metadata,
    Column("user_id", Id, ForeignKey("users.id"), primary_key=True),
    Column("version", BigInteger, nullable=False, server_default=text("0")),
)

credit_packages = Table(
    "credit_packages", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False, index=True),
    Column("type", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("frozen", BigInteger, nullable=False, server_default=text("0")),
    Column("used", BigInteger, nullable=False, server_default=text("0")),
    Column("expired", BigInteger, nullable=False, server_default=text("0")),
    Column("expires_at_ms", BigInteger),
    Column("created_at_ms", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("remaining >= 0 AND frozen >= 0 AND used >= 0 AND expired >= 0", name="buckets_nonneg"),
    CheckConstraint("remaining + frozen + used + expired = amount", name="buckets_sum"),
)

credit_holds = Table(
    "credit_holds", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("video_id", Id, ForeignKey("videos.id"), nullable=False, unique=True),
    Column("amount", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("resolved_at_ms", BigInteger),
    CheckConstraint("amount > 0", name="amount_positive"),
)

hold_allocations = Table(
    "hold_allocations", metadata,
    Column("hold_id", Id, ForeignKey("credit_holds.id"), primary_key=True),
    Column("package_id", Id, ForeignKey("credit_packages.id"), primary_key=True),
    Column("amount", BigInteger, nullable=False),
)

credit_entries = Table(
    "credit_entries", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("trans_no", String(40), nullable=False, unique=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("type", String(24), nullable=False),
    Column("credits", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("video_uuid", String(36)),
    Column("package_id", Id),
    Column("hold_id", Id),
    Column("created_at_ms", BigInteger, nullable=False),
    # Each hold is frozen, settled or released at most once, whatever the application does.
    UniqueConstraint("hold_id", "type"),
    Index("ix_credit_entries_user_history", "user_id", "id"),
)

videos = Table(
    "videos", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("uuid", String(36), nullable=False, unique=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("prompt", Text, nullable=False),
    Column("model", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress", Integer, nullable=False, server_default=text("0")),
    Column("provider", String(32)),
    Column("video_url", Text),
    Column("thumbnail_url", Text),
    Column("start_image_url", Text),
    Column("duration", Integer, nullable=False),
    Column("resolution", String(16)),
    Column("aspect_ratio", String(8), nullable=False),
    Column("file_size", BigInteger),
    Column("credits_used", Integer, nullable=False),
    Column("generation_time", Integer),
    Column("error_message", Text),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("started_at_ms", BigInteger),
    Column("completed_at_ms", BigInteger),
    Column("deleted_at_ms", BigInteger),
    CheckConstraint("progress >= 0 AND progress <= 100", name="progress_range"),
    # The owner's list, newest first: only live rows are in it, so a page (and any OFFSET before
    # it) is read straight off the index, never a soft-deleted row looked up to be skipped.
    Index("ix_videos_user_live", "user_id", "created_at_ms", "id",
          sqlite_where=text("deleted_at_ms IS NULL"), postgresql_where=text("deleted_at_ms IS NULL")),
)

# The durable runner's state for a video still in flight; deleted when the video is terminal,
# so the claim query only ever looks at live work.
tasks = Table(
    "tasks", metadata,
    Column("video_id", Id, ForeignKey("videos.id"), primary_key=True),
    Column("route", Text, nullable=False),            # JSON list of provider names
    Column("route_index", Integer, nullable=False, server_default=text("0")),
    Column("provider_task_id", String(256)),
    Column("next_run_at_ms", BigInteger, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until_ms", BigInteger),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("created_at_ms", BigInteger, nullable=False),
    # W3C traceparent of the request that made the task (tracing on): its run continues that trace.
    Column("traceparent", String(64)),
    Index("ix_tasks_next_run_at_ms", "next_run_at_ms"),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("key", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),      # processing | done
    Column("video_uuid", String(36)),
    Column("created_at_ms", BigInteger, nullable=False),
    UniqueConstraint("user_id", "key"),
)
