"""Sockets signed in with an API key, ended when the key stops signing in.

An HTTP request looks its key up on every request (through the Authenticator's short cache), so a
revoked key stops working within ``KENSA_AUTH_CACHE_SECONDS``. A WebSocket signs in once, at
connection_init, and may stay open for hours: without this, a revoked key or a deleted user would
keep its sockets' queries, mutations and subscriptions running. Every ``interval`` seconds the keys
of this process's open sockets are checked against the database in one batched read, so a
revocation made through any replica reaches the sockets of every replica, and the cost grows
with the number of distinct keys, not of sockets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from kensa_gql.adapters.db.database import Database
from kensa_gql.services.accounts import active_keys

log = logging.getLogger("kensa_gql.sessions")


class SignedIn(Protocol):
    """A socket signed in with a key: ``revoke`` ends it as its protocol ends a refused sign-in."""

    async def revoke(self) -> None: ...


class Sessions:
    def __init__(self, db: Database, *, interval: float) -> None:
        self._db = db
        self.interval = interval
        self._by_key: dict[str, set[SignedIn]] = {}

    def join(self, key: str, socket: SignedIn) -> None:
        self._by_key.setdefault(key, set()).add(socket)

    def leave(self, key: str, socket: SignedIn) -> None:
        members = self._by_key.get(key)
        if members is not None:
            members.discard(socket)
            if not members:
                del self._by_key[key]

    def __len__(self) -> int:
        return sum(len(members) for members in self._by_key.values())

    async def check(self) -> int:
        """End every socket whose key no longer signs in; how many were ended."""
        keys = list(self._by_key)
        if not keys:
            return 0
        valid = await active_keys(keys, db=self._db)
        ended = 0
        for key in keys:
            if key in valid:
                continue
            for socket in self._by_key.pop(key, ()):
                ended += 1
                try:
                    await socket.revoke()
                except Exception:  # one socket's failure must not spare the others
                    log.exception("a socket of a revoked key could not be ended")
        if ended:
            log.info("ended %d socket(s) whose API key no longer signs in", ended)
        return ended

    async def run(self) -> None:
        """Check every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception as exc:  # a database that cannot answer proves nothing: nothing is ended
                log.warning("the open sockets' keys could not be checked: %s", exc)
