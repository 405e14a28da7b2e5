"""The REST rendering of the error tree: one table from code to HTTP status."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kensa_gql.domain.errors import KensaError

HTTP_STATUS = {
    "BAD_USER_INPUT": 400,
    "UNAUTHENTICATED": 401,
    "INSUFFICIENT_CREDITS": 402,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "CONFLICT": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "IDEMPOTENCY_KEY_REUSED": 422,
    "RATE_LIMITED": 429,
    "INTERNAL_SERVER_ERROR": 500,
}

_HTTP_CODES = {400: "BAD_USER_INPUT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
               413: "PAYLOAD_TOO_LARGE"}


def error_response(code: str, message: str, *, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": False, "error": {"code": code, "message": message}},
                        status_code=HTTP_STATUS.get(code, 500), headers=headers)


async def on_kensa_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KensaError)
    status = HTTP_STATUS.get(exc.code, 500)
    if status == 500:
        # A provider or internal error never reaches a REST client verbatim.
        return error_response("INTERNAL_SERVER_ERROR", "internal server error")
    return error_response(exc.code, exc.message)


async def on_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "BAD_USER_INPUT" if exc.status_code < 500 else "INTERNAL_SERVER_ERROR")
    messages = {404: "not found", 405: "method not allowed"}
    response = error_response(code, messages.get(exc.status_code, str(exc.detail)), headers=exc.headers)
    response.status_code = exc.status_code
    return response
