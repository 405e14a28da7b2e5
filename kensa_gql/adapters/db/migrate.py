"""Applying the Alembic migrations programmatically (``kensa-gql db upgrade``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Blocking: call it from a thread when an event loop is running."""
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split("///", 1)[-1].split("?", 1)[0]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def head_revision(url: str) -> str:
    """The newest revision this release ships."""
    heads = ScriptDirectory.from_config(alembic_config(url)).get_heads()
    return heads[0] if len(heads) == 1 else ",".join(sorted(heads))


def revisions_between(url: str, old: str | None, new: str | None) -> list[str]:
    """The revisions applied to go from ``old`` to ``new``, oldest first."""
    if new is None or old == new:
        return []
    script = ScriptDirectory.from_config(alembic_config(url))
    return [rev.revision for rev in reversed(list(script.iterate_revisions(new, old or "base")))]


def _sqlite_file_missing(url: str) -> bool:
    path = url.split("///", 1)[-1].split("?", 1)[0]
    return path != ":memory:" and not Path(path).exists()


async def current_revision(url: str, *, connect_timeout: float = 5.0) -> str | None:
    """The revision the database is at (None: never migrated). Raises what the driver raises."""
    if url.startswith("sqlite") and _sqlite_file_missing(url):
        return None  # not created yet: asking would create an empty file
    connect_args: dict[str, Any] = {} if url.startswith("sqlite") else {"timeout": connect_timeout}
    engine = create_async_engine(url, connect_args=connect_args)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
    finally:
        await engine.dispose()
