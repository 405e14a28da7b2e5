"""The dependencies the use cases need, assembled once by the composition root (app.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kensa_gql.adapters.db.database import Database
from kensa_gql.domain.catalog import Catalog
from kensa_gql.domain.ports import EventPublisher, Storage
from kensa_gql.domain.videos import Video
from kensa_gql.domain.watching import Watchers
from kensa_gql.services.routing import Router

HostChecker = Callable[[str], Awaitable[None]]


class WebhookUrlChecker(Protocol):
    """Whether a webhook URL may be stored (adapters/webhook_sender.py's WebhookUrlGuard)."""

    async def check(self, url: str, field: str = "url") -> None: ...


@dataclass(frozen=True, slots=True)
class Deps:
    db: Database
    catalog: Catalog
    router: Router
    publisher: EventPublisher
    check_host: HostChecker
    storage: Storage  # where finished media lives: deleting a video unpublishes its files
    wake_runner: Callable[[], None] = lambda: None
    # Who follows which video in this process; the event fan-out offers each change to them.
    watchers: Watchers = field(default_factory=dict)
    # Webhooks: the URL rules, and the video as deliveries carry it (REST's detail JSON; app.py).
    webhook_urls: WebhookUrlChecker | None = None
    video_json: Callable[[Video], dict[str, Any]] | None = None
    sse_keepalive_seconds: float = 15.0
