"""One typed Settings object, read from ``KENSA_*`` environment variables."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A base URL ending in the version path the adapter adds itself would double it (".../v1/v1/...").
_VERSION_PATH = re.compile(r"/(v\d+(beta\d*|alpha\d*)?|api/v\d+)$")


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(Exception):
    """A KENSA_* variable holds a value the gateway cannot start with."""


class Settings(BaseSettings):
    """Everything configurable about the gateway; defaults give the embedded, offline setup."""

    model_config = SettingsConfigDict(env_prefix="KENSA_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///./kensa.db"
    # How long a request waits for a database lock held elsewhere (SQLite's busy timeout,
    # PostgreSQL's lock_timeout) before it answers 503 UNAVAILABLE with Retry-After.
    db_lock_timeout_seconds: float = Field(default=5.0, gt=0, le=600)
    # The hottest reads (a video by uuid, a page, an API key) straight on the driver, one statement
    # each (adapters/db/reads.py); false: through units of work. On PostgreSQL they use asyncpg's
    # prepared statements on a pool of their own: turn this off behind a transaction-mode pooler.
    db_fast_reads: bool = True
    # PostgreSQL: a generate's ledger writes in one statement (adapters/db/ledger_store.py); false:
    # one statement each, as on SQLite.
    db_combined_writes: bool = True
    # SQLite: the fast reads keep their answers until the next commit by any connection (PRAGMA
    # data_version says when), at most db_read_memo_size of them; false: every read reads.
    db_read_memo: bool = True
    db_read_memo_size: int = Field(default=4096, ge=1)
    broadcast_url: str = "memory://"
    media_dir: Path = Path("./media")
    public_url: str = "http://127.0.0.1:8000"
    storage_url: str = ""  # empty: file:// under media_dir
    # s3:// storage only (docs/storage.md): where clients fetch objects from; empty = presigned GET URLs.
    s3_public_url: str = ""
    s3_url_expiry_seconds: int = Field(default=7 * 24 * 3600, ge=60, le=7 * 24 * 3600)  # SigV4 allows 7 days
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"  # auto: path with a custom endpoint

    local_generation_seconds: float = Field(default=6.0, ge=0, le=3600)
    local_failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    task_timeout_seconds: float = Field(default=1800.0, gt=0)
    poll_interval_seconds: float = Field(default=10.0, gt=0, le=3600)

    # Durable runner: how long a claimed task stays ours without a heartbeat, how many we hold.
    lease_seconds: float = Field(default=30.0, gt=0, le=3600)
    claim_interval_seconds: float = Field(default=0.5, gt=0, le=60)
    # How often each process looks for videos past their deadline (Cancel-After / deadlineSeconds).
    deadline_sweep_seconds: float = Field(default=1.0, gt=0, le=60)
    claim_batch: int = Field(default=16, ge=1, le=1000)
    max_running_tasks: int = Field(default=64, ge=1, le=100_000)
    # Started videos per user across every worker; the rest wait as PENDING (claimed fairly:
    # every user's first waiting video before anyone's next).
    max_active_videos_per_user: int = Field(default=4, ge=1, le=100_000)
    # `kensa-gql worker` touches this file while its claim loop reaches the database (a container
    # healthcheck reads its age); empty: no file.
    worker_health_file: str = ""

    max_video_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    # Writing a finished video to storage: tries in all, and the first back-off (doubling, at
    # most 60 s each); then the video FAILS and its credits are released.
    store_attempts: int = Field(default=5, ge=1, le=20)
    store_backoff_seconds: float = Field(default=1.0, ge=0, le=60)
    routes: Annotated[dict[str, list[str]], NoDecode] = Field(default_factory=dict)

    # Vendors (docs/providers.md). A key enables the provider; a base URL is the vendor's origin
    # without its API version path (the adapter adds /v1/..., /v1beta/..., /api/v3/...).
    evolink_api_key: SecretStr | None = None
    evolink_base_url: str = "https://api.evolink.ai"
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com"
    gemini_api_key: SecretStr | None = None
    gemini_base_url: str = "https://generativelanguage.googleapis.com"
    dashscope_api_key: SecretStr | None = None
    dashscope_base_url: str = "https://dashscope-intl.aliyuncs.com"
    ark_api_key: SecretStr | None = None
    ark_base_url: str = "https://ark.ap-southeast.bytepluses.com"

    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    # The access line is queued as its parts, without a LogRecord, when nothing but our writer could
    # see it (logs.py ``info``); false makes every line a LogRecord (the stock logging path).
    log_direct: bool = True
    # OpenTelemetry traces (docs/operations.md): "console" prints spans to stderr; otherwise they are
    # on only when the standard OTEL_EXPORTER_OTLP_ENDPOINT is set.
    otel: Literal["", "console", "off"] = ""

    # GraphQL
    graphiql: bool = True
    console: bool = True  # the web console at / (api/console/)
    introspection: bool = True
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    graphql_max_depth: int = Field(default=12, ge=1)
    graphql_max_aliases: int = Field(default=30, ge=1)
    graphql_max_tokens: int = Field(default=1000, ge=10)
    # Checked before validation, whose cost grows with them (api/graphql/limits.py).
    graphql_max_selections: int = Field(default=300, ge=10)
    graphql_max_repeated_fields: int = Field(default=5, ge=1)
    graphql_max_document_bytes: int = Field(default=16_384, ge=256)
    max_subscriptions_per_connection: int = Field(default=20, ge=1)
    # Browsers send connection_init at once; an idle unauthenticated socket should not linger.
    graphql_connection_init_timeout_seconds: float = Field(default=10.0, gt=0)
    # The accelerator (api/graphql/fastpath, api/graphql/ws): compiled plans for remembered POSTs and
    # lean graphql-transport-ws subscribers. Off: Strawberry's own view and protocol handlers serve
    # everything (docs/graphql.md says what each costs).
    graphql_fastpath: bool = True

    # Outbound webhooks (docs/webhooks.md). http:// and non-public addresses are for development.
    webhooks_allow_http: bool = False
    webhooks_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    # Failed deliveries are retried with exponential back-off (x4, jittered) from the first
    # delay, for this long after the event; then they are FAILED.
    webhook_first_retry_seconds: float = Field(default=5.0, gt=0, le=3600)
    webhook_retry_window_seconds: float = Field(default=24 * 3600.0, gt=0, le=30 * 24 * 3600)
    # Finished deliveries (the delivery log) are deleted after this many days, as Stripe keeps events 30.
    webhook_retention_days: int = Field(default=30, ge=1, le=3650)
    # Server-sent events (GET /api/v1/video/{uuid}/events): a comment this often keeps proxies open.
    sse_keepalive_seconds: float = Field(default=15.0, gt=0, le=300)

    # Authentication cache: how long a verified key is trusted before the database is asked again.
    auth_cache_seconds: float = Field(default=2.0, ge=0, le=60)

    # Rate limits per minute (api/ratelimits.py, docs/operations.md): per API key (its user) for
    # generates and for every other call, per client address without a valid key. Shared through
    # Redis when KENSA_BROADCAST_URL is redis://, else counted in this process.
    rate_limits: bool = True
    rate_limit_generate_per_minute: int = Field(default=60, ge=0, le=1_000_000_000)
    rate_limit_requests_per_minute: int = Field(default=1200, ge=0, le=1_000_000_000)
    rate_limit_anonymous_per_minute: int = Field(default=600, ge=0, le=1_000_000_000)
    # Proxies (addresses or CIDR networks) whose X-Forwarded-For names the client; empty: none.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Prometheus (api/metrics.py): false drops the HTTP instruments and /metrics; a bearer token
    # to require at /metrics (empty: open; keep it off the public edge then).
    metrics: bool = True
    metrics_token: SecretStr | None = None

    @field_validator("routes", mode="before")
    @classmethod
    def _parse_routes(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON: {exc.msg}") from exc
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or network: {network!r}") from None
        return value

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _blank_token_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}, not {value!r}")
        return level

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("s3_public_url")
    @classmethod
    def _check_s3_public_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must be a sqlite+aiosqlite:// or postgresql+asyncpg:// URL")
        return value

    @field_validator("broadcast_url")
    @classmethod
    def _check_broadcast_url(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("must be a memory://, redis:// or rediss:// URL")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @field_validator("evolink_api_key", "openai_api_key", "gemini_api_key", "dashscope_api_key",
                     "ark_api_key", mode="before")
    @classmethod
    def _blank_key_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("evolink_base_url", "openai_base_url", "gemini_base_url", "dashscope_base_url",
                     "ark_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not carry a query, fragment or credentials (keys go in *_API_KEY)")
        path = parts.path.rstrip("/")
        if _VERSION_PATH.search(path):
            raise ValueError("must be the vendor's origin without the API version path "
                             "(e.g. https://api.evolink.ai, not .../v1)")
        return f"{parts.scheme}://{parts.netloc}{path}"


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment, turning validation failures into one readable line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            # pydantic prefixes a validator's own message with "Value error, "; the operator needs only the message.
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"KENSA_{field.upper()}: {message}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
