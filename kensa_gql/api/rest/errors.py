"""The REST rendering of the error tree: the envelope, with the status from api/error_status.py."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kensa_gql.api.error_status import HTTP_STATUS
from kensa_gql.domain.errors import KensaError, RateLimited, Unavailable

_HTTP_CODES = {400: "BAD_USER_INPUT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
               413: "PAYLOAD_TOO_LARGE"}


def error_response(code: str, message: str, *, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": False, "error": {"code": code, "message": message}},
                        status_code=HTTP_STATUS.get(code, 500), headers=headers)


def rendered(exc: Exception) -> Response | None:
    """The response for an error of the tree or an HTTPException; None for anything else (a fault)."""
    if isinstance(exc, KensaError):
        return _kensa_error(exc)
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    return None


async def on_kensa_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KensaError)
    return _kensa_error(exc)


async def on_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _http_error(exc)


def _kensa_error(exc: KensaError) -> Response:
    status = HTTP_STATUS.get(exc.code, 500)
    if status == 500:
        # A provider or internal error never reaches a REST client verbatim.
        return error_response("INTERNAL_SERVER_ERROR", "internal server error")
    if isinstance(exc, Unavailable | RateLimited):
        return error_response(exc.code, exc.message, headers={"Retry-After": str(exc.retry_after)})
    return error_response(exc.code, exc.message)


def _http_error(exc: HTTPException) -> Response:
    code = _HTTP_CODES.get(exc.status_code, "BAD_USER_INPUT" if exc.status_code < 500 else "INTERNAL_SERVER_ERROR")
    messages = {404: "not found", 405: "method not allowed"}
    response = error_response(code, messages.get(exc.status_code, str(exc.detail)), headers=exc.headers)
    response.status_code = exc.status_code
    return response
