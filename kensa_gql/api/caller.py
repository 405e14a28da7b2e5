"""Who an HTTP request comes from, authenticated once per request.

The rate limiter (api/ratelimits.py) must know the user before any route runs, to count the
request against that user's budget; the route then needs the same user. Rather than verify the
key twice (its shape, its hash, the cache), the first to succeed leaves the principal in the
request's scope and the others take it from there. Only a success is remembered: a bad or
missing key is refused by the route itself, exactly as before. Only for HTTP: a WebSocket's scope
lives as long as the socket, and its key is checked again when sessions are revoked.
"""

from __future__ import annotations

from starlette.types import Scope

from kensa_gql.services.accounts import Authenticator, Principal, bearer_token

_KEY = "kensa.principal"


def remember(scope: Scope, principal: Principal) -> None:
    """``principal`` signed the request in with its ``Authorization`` header (the first one)."""
    scope.setdefault("state", {})[_KEY] = principal


def remembered(scope: Scope) -> Principal | None:
    state = scope.get("state")
    return None if state is None else state.get(_KEY)


def authorization(scope: Scope) -> str | None:
    """The first ``Authorization`` header's value, as Starlette's ``Headers.get`` finds it."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


async def authenticate(scope: Scope, authenticator: Authenticator) -> Principal:
    """The caller, from the request's ``Authorization`` header: remembered, or verified now."""
    if scope["type"] != "http":
        return await authenticator.authenticate(bearer_token(authorization(scope)))
    principal = remembered(scope)
    if principal is not None:
        return principal
    principal = await authenticator.authenticate(bearer_token(authorization(scope)))
    remember(scope, principal)
    return principal
