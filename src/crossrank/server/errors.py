"""One table from error to HTTP status, and one JSON envelope for every error.

Every error answer looks like ``{"error": {"type": ..., "message": ...}}``; a top-level
``message`` repeats the text for clients (Cohere's SDK, TEI's) that read that field instead.
Exception text reaches the client only for crossrank's own errors, whose messages are written
for users; anything else is logged and answered with a generic 500.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from crossrank.errors import (
    CrossrankError,
    DeadlineExceeded,
    HubUnavailable,
    InvalidInput,
    ModelError,
    ModelNotFound,
    Overloaded,
)


class MalformedBody(InvalidInput):
    """The request body cannot be read as JSON: not UTF-8, not JSON, or JSON that Python alone
    accepts (NaN, Infinity, a number beyond float range)."""


class PayloadTooLarge(InvalidInput):
    """The request body or the number of documents is above the configured maximum."""

    kind = "payload_too_large"


class Unauthorized(CrossrankError):
    """The inference routes need ``Authorization: Bearer <key>``."""

    kind = "unauthorized"


class NotReady(CrossrankError):
    """The server is starting or shutting down."""

    kind = "not_ready"


class ShuttingDown(NotReady):
    """The server stopped before this request finished (``--graceful-timeout`` ran out)."""

    kind = "shutting_down"


#: most specific class first; the first match wins
STATUS: tuple[tuple[type[CrossrankError], int], ...] = (
    (PayloadTooLarge, 413),
    (MalformedBody, 400),
    (InvalidInput, 422),
    (Unauthorized, 401),
    (ModelNotFound, 404),
    (Overloaded, 429),
    (NotReady, 503),
    (DeadlineExceeded, 504),
    (HubUnavailable, 503),
    (ModelError, 500),
    (CrossrankError, 500),
)

#: seconds a client should wait after a 429 before retrying
RETRY_AFTER_SECONDS = 1

_HTTP_KINDS = {400: "invalid_input", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_input"}


def status_of(exc: CrossrankError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def envelope_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, **extra}, "message": message}


def envelope(kind: str, message: str, status: int, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(envelope_body(kind, message, **extra), status_code=status, headers=headers)


def crossrank_response(exc: CrossrankError) -> JSONResponse:
    status = status_of(exc)
    headers: dict[str, str] = {}
    if status == 429:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    message = str(exc) if status < 500 or isinstance(exc, (DeadlineExceeded, NotReady, HubUnavailable)) else (
        "the model failed on this request; see the server log"
    )
    return envelope(exc.kind, message, status, headers or None)


def internal_error() -> JSONResponse:
    """The answer to an exception crossrank did not raise on purpose (logged, never shown)."""
    return envelope("internal", "internal server error; see the server log", 500)


def _describe(errors: list[Any]) -> tuple[int, str]:
    """A readable message from pydantic errors; malformed JSON is a 400, the rest 422."""
    parts = []
    status = 422
    for error in errors[:5]:
        loc = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        if error.get("type") == "json_invalid":
            status = 400
            parts.append(f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})")
        else:
            parts.append(f"{loc or 'body'}: {error.get('msg', 'invalid')}")
    if len(errors) > 5:
        parts.append(f"... and {len(errors) - 5} more")
    return status, "; ".join(parts) or "invalid request"


def install_handlers(app: FastAPI) -> None:
    """Route every error through the envelope."""

    async def on_crossrank(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CrossrankError)
        response = crossrank_response(exc)
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.error(exc.kind)
        return response

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        status, message = _describe(list(exc.errors()))
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.error("invalid_input")
        return envelope("invalid_input", message, status)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = _HTTP_KINDS.get(exc.status_code, "http_error")
        message = str(exc.detail)  # Starlette's and FastAPI's own texts, never the client's data
        return envelope(kind, message, exc.status_code, dict(exc.headers or {}) or None)

    app.add_exception_handler(CrossrankError, on_crossrank)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    # any other exception is answered by the app's outermost middleware (server.gate.RequestGate)
