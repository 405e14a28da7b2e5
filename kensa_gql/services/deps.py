"""The dependencies the use cases need, assembled once by the composition root (app.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kensa_gql.adapters.db.database import Database
from kensa_gql.domain.catalog import Catalog
from kensa_gql.domain.ports import EventPublisher, Storage
from kensa_gql.domain.watching import Watchers
from kensa_gql.services.routing import Router

HostChecker = Callable[[str], Awaitable[None]]


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
