"""The schema. Times are integer epoch milliseconds: exact, portable, and cheap to order by."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
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
    # The user's own rate limits per minute (`users set-limits`); NULL: the gateway's defaults.
    Column("generate_per_minute", Integer),
    Column("requests_per_minute", Integer),
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

# The rows the deadline sweep looks at; its query repeats this text so the planner uses the index.
DEADLINE_LIVE = "deadline_at_ms IS NOT NULL AND status IN ('PENDING', 'GENERATING', 'UPLOADING')"

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
    Column("failure_code", String(32)),      # domain FailureCode, once FAILED or CANCELLED
    Column("deadline_at_ms", BigInteger),    # stopped (FAILED, DEADLINE_EXCEEDED) if not finished by then
    CheckConstraint("progress >= 0 AND progress <= 100", name="progress_range"),
    # The owner's list, newest first: only live rows are in it, so a page (and any OFFSET before
    # it) is read straight off the index, never a soft-deleted row looked up to be skipped.
    Index("ix_videos_user_live", "user_id", "created_at_ms", "id",
          sqlite_where=text("deleted_at_ms IS NULL"), postgresql_where=text("deleted_at_ms IS NULL")),
    # The deadline sweep: only videos with a deadline that are still in flight are in it.
    Index("ix_videos_due_deadline", "deadline_at_ms",
          sqlite_where=text(DEADLINE_LIVE), postgresql_where=text(DEADLINE_LIVE)),
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
    # The started (claimed at least once) tasks: per-user running counts for the claim's cap,
    # read without visiting the waiting ones.
    Index("ix_tasks_started", "video_id", sqlite_where=text("attempts > 0"), postgresql_where=text("attempts > 0")),
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

# -- outbound webhooks (docs/webhooks.md) -------------------------------------------------------
webhook_endpoints = Table(
    "webhook_endpoints", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("public_id", String(40), nullable=False, unique=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("events", Text, nullable=False),            # JSON list of event names
    Column("secret", String(128), nullable=False),
    Column("previous_secret", String(128)),            # still signs beside the new one until...
    Column("previous_secret_until_ms", BigInteger),
    Column("disabled_at_ms", BigInteger),
    Column("disabled_reason", Text),
    Column("failing_since_ms", BigInteger),            # the first failure since the last success
    Column("created_at_ms", BigInteger, nullable=False),
)

# One per account, made on first use: signs the deliveries to videos' own webhookUrl.
webhook_secrets = Table(
    "webhook_secrets", metadata,
    Column("user_id", Id, ForeignKey("users.id"), primary_key=True),
    Column("secret", String(128), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

# A video's own webhookUrl / webhookEvents (the per-video override), kept beside the video.
video_webhooks = Table(
    "video_webhooks", metadata,
    Column("video_id", Id, ForeignKey("videos.id"), primary_key=True),
    Column("url", Text, nullable=False),
    Column("events", Text, nullable=False),
)

# The outbox: written in the transaction of the status change it reports, sent by the worker.
webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", String(40), nullable=False, unique=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("endpoint_id", Id, ForeignKey("webhook_endpoints.id", ondelete="SET NULL")),
    Column("video_id", Id, ForeignKey("videos.id")),
    Column("to_endpoint", Boolean, nullable=False),   # false: the video's own webhookUrl
    Column("url", Text, nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at_ms", BigInteger),
    Column("lease_owner", String(64)),
    Column("lease_until_ms", BigInteger),
    Column("last_status_code", Integer),
    Column("last_response", Text),
    Column("last_error", Text),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("delivered_at_ms", BigInteger),
    # The sender's claim reads only deliveries still waiting.
    Index("ix_webhook_deliveries_due", "next_attempt_at_ms",
          sqlite_where=text("status = 'PENDING'"), postgresql_where=text("status = 'PENDING'")),
    Index("ix_webhook_deliveries_user", "user_id", "id"),
    Index("ix_webhook_deliveries_video", "video_id", "event_type", "created_at_ms"),
)
