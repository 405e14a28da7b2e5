"""Who is calling and with what: one context per HTTP request or per WebSocket.

HTTP and WebSocket authenticate through the same helper, ``authenticate``: the key comes from a
``connection_init`` payload's ``Authorization`` entry (any case) when there is one, otherwise
from the request's ``Authorization: Bearer`` header.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from starlette.requests import HTTPConnection

from kensa_gql import logs
from kensa_gql.api import caller
from kensa_gql.domain.errors import Unauthenticated
from kensa_gql.services.accounts import Authenticator, Principal, bearer_token
from kensa_gql.services.deps import Deps
from kensa_gql.services.sessions import Sessions


def _authorization_param(params: Mapping[str, Any] | None) -> str | None:
    """The ``Authorization`` value of a connection_init payload; "" (never valid) if not a string."""
    if not params:
        return None
    for name, value in params.items():
        if isinstance(name, str) and name.lower() == "authorization":
            return value if isinstance(value, str) else ""
    return None


def presented_key(connection: HTTPConnection, params: Mapping[str, Any] | None = None) -> str | None:
    """The API key the caller shows: in the connection_init payload, else in the Authorization header."""
    header = _authorization_param(params)
    if header is None:
        header = connection.headers.get("authorization")
    return bearer_token(header)


async def authenticate(connection: HTTPConnection, params: Mapping[str, Any] | None = None) -> Principal:
    """The caller's principal, from the connection_init payload or else the Authorization header."""
    authenticator: Authenticator = connection.app.state.authenticator
    header = _authorization_param(params)
    if header is None:  # the request's own header, which the rate limiter may have verified already
        principal = await caller.authenticate(connection.scope, authenticator)
    else:
        principal = await authenticator.authenticate(bearer_token(header))
    logs.note(user_id=principal.user_id)
    return principal


def sessions(connection: HTTPConnection) -> Sessions:
    """The app's signed-in sockets: a socket joins once signed in, and is ended if its key is revoked."""
    registry: Sessions = connection.app.state.sessions
    return registry


class Context:
    """What resolvers get as ``info.context``.

    On Strawberry's WebSocket handlers a socket has one, signed in at connection_init
    (view.on_ws_connect); the fast path's sockets make one per operation from the socket's
    principal (ws/connection.py). It holds only that identity and the app's long-lived services.
    """

    def __init__(self, connection: HTTPConnection) -> None:
        state = connection.app.state
        self.connection = connection
        self.deps: Deps = state.deps
        # Set by Strawberry's WebSocket handlers from connection_init's payload (see view.on_ws_connect).
        self.connection_params: dict[str, Any] | None = None
        self.request_id: str | None = connection.scope.get("state", {}).get("request_id")
        self._principal: Principal | None = None
        self._authenticating: asyncio.Future[Principal] | None = None

    @property
    def signed_in(self) -> Principal | None:
        """The caller, if known already (a socket's, or an HTTP request's once asked); no lookup."""
        return self._principal

    def sign_in(self, principal: Principal) -> None:
        self._principal = principal

    def sign_out(self) -> None:
        """The socket's key was revoked: every operation that asks who is calling is refused from now on."""
        self._principal = None

    async def principal(self) -> Principal:
        """The authenticated caller; raises Unauthenticated. Looked up at most once per context."""
        if self._principal is not None:
            return self._principal
        scope = self.connection.scope
        if scope["type"] == "websocket":
            raise Unauthenticated()  # connection_init signs every accepted socket in
        known = caller.remembered(scope)  # verified by the rate limiter for this request
        if known is not None:
            logs.note(user_id=known.user_id)
            self._principal = known
            return known
        if self._authenticating is not None:
            # Several root fields may ask at once; they share one lookup.
            return await asyncio.shield(self._authenticating)
        # The first asker looks up inline (no task per request) and shares the outcome.
        lookup = self._authenticating = asyncio.get_running_loop().create_future()
        try:
            principal = await authenticate(self.connection)
        except Exception as exc:
            lookup.set_exception(exc)
            lookup.exception()  # marked retrieved: only other askers re-raise it
            raise
        except BaseException:
            lookup.cancel()
            raise
        lookup.set_result(principal)
        self._principal = principal
        return principal
