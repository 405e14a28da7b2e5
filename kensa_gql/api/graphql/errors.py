"""The GraphQL rendering of the error tree: ``extensions.code`` is the REST code.

Expected errors (a public ``KensaError``) keep their message and get their code. Errors about the
document itself (syntax, validation, limits, variables) stay readable: clients need them to fix
the query. Anything else is a fault of ours: the client sees a generic message and
``INTERNAL_SERVER_ERROR``, and the log gets the real error once, with the request id.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import MaskErrors
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError

from kensa_gql.api.error_status import is_public
from kensa_gql.domain.errors import BadUserInput, KensaError, RateLimited, Unavailable

log = logging.getLogger("kensa_gql.errors")

INTERNAL_MESSAGE = "Internal server error"
_DOCUMENT_ERRORS = (GraphQLError, CannotGetOperationTypeError, InvalidOperationTypeError)


def public_error(exc: BaseException | None) -> KensaError | None:
    """The KensaError a client may see, else None.

    The status table (api/error_status.py) is the one list of which codes are the client's
    business; reading it here keeps both renderings of the error tree in step.
    """
    if isinstance(exc, KensaError) and is_public(exc.code):
        return exc
    return None


def is_argument_error(error: GraphQLError) -> bool:
    """An argument graphql-core refused while executing (say, a null variable for an ``Int!``
    argument that has a default: validation allows it, coercion does not): the caller's input.

    graphql-core raises these at the argument's node and then locates them at the field, so the
    original error has nodes; an output value a scalar refuses (our fault) raises without any.
    """
    original = error.original_error
    return error.path is not None and isinstance(original, GraphQLError) and bool(original.nodes)


def is_unexpected(error: GraphQLError) -> bool:
    """True for our own faults: neither a public KensaError nor a problem with the document."""
    original = error.original_error
    if public_error(original) is not None or is_argument_error(error):
        return False
    if original is None or isinstance(original, _DOCUMENT_ERRORS):
        # Errors without a path come from parsing, validation or variable coercion; with a path
        # and no cause, graphql-core is reporting a broken result (a null in a non-null field).
        return error.path is not None
    return True


def document_code(error: GraphQLError) -> str:
    return "GRAPHQL_PARSE_FAILED" if isinstance(error, GraphQLSyntaxError) else "GRAPHQL_VALIDATION_FAILED"


def log_unexpected(errors: list[GraphQLError], request_id: str | None) -> None:
    for error in errors:
        if is_unexpected(error):
            cause = error.original_error or error
            log.error("unexpected error resolving %s: %s", ".".join(map(str, error.path or [])) or "?",
                      error.message, exc_info=cause, extra={"request_id": request_id})


def retry_after(errors: list[Any]) -> int | None:
    """The longest ``retryAfter`` among formatted errors coded UNAVAILABLE, or None if there is none."""
    waits = [int(e.get("extensions", {}).get("retryAfter", 1)) for e in errors
             if isinstance(e, dict) and isinstance(e.get("extensions"), dict)
             and e["extensions"].get("code") == "UNAVAILABLE"]
    return max(waits) if waits else None


_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def _every_error(_: GraphQLError) -> bool:
    return True


class ErrorCodes(MaskErrors):
    """Gives every error an ``extensions.code``; masks the unexpected ones.

    MaskErrors asks ``should_mask_error`` of each error and replaces the ones it picks by
    ``anonymise_error``'s: here every error is picked, and ``anonymise_error`` renders it.
    """

    def __init__(self, *, hide_suggestions: bool = False) -> None:
        super().__init__(should_mask_error=_every_error, error_message=INTERNAL_MESSAGE)
        self.hide_suggestions = hide_suggestions

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return self._render(error)

    def _render(self, error: GraphQLError) -> GraphQLError:
        known = public_error(error.original_error)
        if known is not None:
            extensions: dict[str, Any] = {"code": known.code}
            if isinstance(known, BadUserInput) and known.field:
                extensions["field"] = known.field
            elif isinstance(known, Unavailable | RateLimited):
                extensions["retryAfter"] = known.retry_after  # seconds; over HTTP also Retry-After
            return GraphQLError(known.message, nodes=error.nodes, source=error.source,
                                positions=error.positions, path=error.path, extensions=extensions)
        if is_unexpected(error):
            return GraphQLError(INTERNAL_MESSAGE, nodes=error.nodes, source=error.source,
                                positions=error.positions, path=error.path,
                                extensions={"code": "INTERNAL_SERVER_ERROR"})
        message = error.message
        if self.hide_suggestions:
            # With introspection off the schema is private: graphql-core's "Did you mean" names
            # fields, arguments, types, input fields and enum values (Strawberry hides fields only).
            message = _SUGGESTION.sub("", message)
        if error.extensions and "code" in error.extensions:
            if message == error.message:
                return error
            extensions = error.extensions
        else:
            code = "BAD_USER_INPUT" if is_argument_error(error) else document_code(error)
            extensions = {**(error.extensions or {}), "code": code}
        return GraphQLError(message, nodes=error.nodes, source=error.source, positions=error.positions,
                            path=error.path, extensions=extensions)
