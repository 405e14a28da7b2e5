"""SQL for users and API keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from kensa_gql.adapters.db.tables import api_keys, users
from kensa_gql.adapters.db.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: int
    user_id: int
    email: str
    key_hash: str
    revoked: bool
    generate_per_minute: int | None = None  # the user's own rate limits; None: the defaults
    requests_per_minute: int | None = None


# Built once; adapters/db/reads.py runs the same statement on the raw driver connection.
KEY_BY_PREFIX = (select(api_keys.c.id, api_keys.c.user_id, api_keys.c.key_hash, api_keys.c.revoked_at_ms, users.c.email,
                        users.c.generate_per_minute, users.c.requests_per_minute)
                 .join(users, users.c.id == api_keys.c.user_id).where(api_keys.c.prefix == bindparam("prefix")))


def key_record(key_id: int, user_id: int, key_hash: str, revoked_at_ms: int | None, email: str,
               generate_per_minute: int | None, requests_per_minute: int | None) -> KeyRecord:
    """A KEY_BY_PREFIX row, in its column order."""
    return KeyRecord(id=key_id, user_id=user_id, email=email, key_hash=key_hash, revoked=revoked_at_ms is not None,
                     generate_per_minute=generate_per_minute, requests_per_minute=requests_per_minute)


class DuplicateEmail(Exception):
    pass


class AccountsStore:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def add_user(self, email: str, now_ms: int) -> User:
        try:
            async with self._uow.conn.begin_nested():
                result = await self._uow.conn.execute(
                    insert(users).values(email=email, created_at_ms=now_ms).returning(users.c.id))
        except IntegrityError as exc:
            raise DuplicateEmail(email) from exc
        return User(id=int(result.scalar_one()), email=email)

    async def user_by_email(self, email: str) -> User | None:
        row = (await self._uow.conn.execute(select(users.c.id, users.c.email).where(users.c.email == email))).first()
        return None if row is None else User(id=row.id, email=row.email)

    async def user_by_id(self, user_id: int) -> User | None:
        row = (await self._uow.conn.execute(select(users.c.id, users.c.email).where(users.c.id == user_id))).first()
        return None if row is None else User(id=row.id, email=row.email)

    async def count_users(self) -> int:
        return int((await self._uow.conn.execute(select(func.count()).select_from(users))).scalar_one())

    async def add_key(self, user_id: int, prefix: str, key_hash: str, now_ms: int) -> None:
        await self._uow.conn.execute(insert(api_keys).values(
            user_id=user_id, prefix=prefix, key_hash=key_hash, created_at_ms=now_ms))

    async def key_by_prefix(self, prefix: str) -> KeyRecord | None:
        row = (await self._uow.conn.execute(KEY_BY_PREFIX, {"prefix": prefix})).first()
        return None if row is None else key_record(*row)

    async def active_key_hashes(self, prefixes: Sequence[str]) -> set[str]:
        """The hashes of those keys (by prefix) that are not revoked and whose user still exists."""
        found: set[str] = set()
        for start in range(0, len(prefixes), 500):  # keeps each IN (...) list well under driver limits
            rows = await self._uow.conn.execute(
                select(api_keys.c.key_hash).join(users, users.c.id == api_keys.c.user_id)
                .where(api_keys.c.prefix.in_(list(prefixes[start:start + 500])), api_keys.c.revoked_at_ms.is_(None)))
            found.update(row.key_hash for row in rows)
        return found

    async def set_limits(self, user_id: int, changes: Mapping[str, int | None]) -> dict[str, int | None]:
        """Write the given limits (generate_per_minute, requests_per_minute); returns both after."""
        statement = update(users).where(users.c.id == user_id).returning(
            users.c.generate_per_minute, users.c.requests_per_minute)
        row = (await self._uow.conn.execute(statement.values(**changes) if changes else
                                            statement.values(id=users.c.id))).one()
        return {"generate_per_minute": row[0], "requests_per_minute": row[1]}

    async def revoke_key(self, prefix: str, now_ms: int) -> bool:
        result = await self._uow.conn.execute(
            update(api_keys).where(api_keys.c.prefix == prefix, api_keys.c.revoked_at_ms.is_(None))
            .values(revoked_at_ms=now_ms))
        return result.rowcount == 1

    async def revoke_keys_of(self, user_id: int, now_ms: int) -> list[str]:
        """Revoke every active key of a user; their prefixes, sorted."""
        rows = await self._uow.conn.execute(
            select(api_keys.c.prefix).where(api_keys.c.user_id == user_id, api_keys.c.revoked_at_ms.is_(None)))
        prefixes = sorted(row.prefix for row in rows)
        if prefixes:
            await self._uow.conn.execute(
                update(api_keys).where(api_keys.c.user_id == user_id, api_keys.c.revoked_at_ms.is_(None))
                .values(revoked_at_ms=now_ms))
        return prefixes
