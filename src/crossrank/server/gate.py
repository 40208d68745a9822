"""The request gate: the ASGI middleware every HTTP request passes before any route sees it.

In this order, each step before the next one costs anything:

1. the request is matched against the app's routes by path and method (the table
   :func:`gated_routes` builds when the app is made). A request no route serves (404, 405) and
   a ``GET`` go on without the gate reading their body: nothing will;
2. a route that declares ``Depends(require_api_key)`` is checked for the key from the headers
   alone: a client without it gets 401 before a byte of its body is read or counted;
3. the body's size: over ``--max-body-bytes`` (declared or counted) is a 413, and the bytes held
   by bodies of all requests in flight stay under ``--max-inflight-bytes`` (429);
4. the body is parsed as strict JSON (:func:`crossrank.server.body.decode_json`) once, in a
   worker thread when it is large, so a malformed body fails its own request with a 400/422
   before it can join a batch shared with other clients; the parsed value travels in the scope.

It also answers ``HEAD`` wherever ``GET`` is served, turns any exception a route lets through
into the JSON envelope (a 500 that names nothing), answers a request that ``--graceful-timeout``
cut short with a 503 envelope, and counts every request in the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crossrank.errors import (
    ClientGone,
    CrossrankError,
    InvalidInput,
    Overloaded,
    PayloadTooLarge,
    ShuttingDown,
    Unauthorized,
)
from crossrank.server.auth import MESSAGE, authorized, needs_key
from crossrank.server.body import PARSED, decode_json
from crossrank.server.errors import crossrank_response, internal_error, status_of
from crossrank.server.metrics import Metrics

log = logging.getLogger(__name__)

#: bodies of at least this many bytes are parsed in a worker thread, off the event loop
OFFLOAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class GatedRoute:
    route: APIRoute
    protected: bool  #: the route declares Depends(require_api_key)


def gated_routes(routers: Iterable[APIRouter]) -> list[GatedRoute]:
    """The routes of ``routers`` with whether each needs the key, in the app's order."""
    return [GatedRoute(route, needs_key(route.dependant))
            for router in routers for route in router.routes if isinstance(route, APIRoute)]


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root + "/") else path


class _Answer:
    """The ``send`` the app gets: remembers the status and whether the answer began."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500
        self.started = False
        self.head = False  # a HEAD request served as GET: the body is not sent
        self.path: str | None = None  # the matched route's path (metrics), when the app never ran

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started = True
        elif message["type"] == "http.response.body" and self.head:
            message = {**message, "body": b""}
        await self._send(message)


class RequestGate:
    """ASGI middleware: see the module's description."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[GatedRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.inflight = 0  # bytes of request bodies reserved by requests not finished (one event loop)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope = dict(scope)  # changed below; the server keeps its own (it sends no body to a HEAD)
        answer = _Answer(send)
        if scope["method"] == "HEAD":
            scope["method"] = "GET"
            answer.head = True
        try:
            await self._pass(scope, receive, answer)
        except ClientGone:
            answer.status = 499
            self.metrics.error("client_closed")
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if answer.started or task is None or not task.cancelling():
                raise
            # the server's --graceful-timeout ran out with this request unanswered
            task.uncancel()
            await self._refuse(ShuttingDown("the server is shutting down and stopped this request before it "
                                            "finished (--graceful-timeout); retry it"), scope, receive, answer)
        except Exception:
            # Answered here and not re-raised: Starlette's own last-resort handler re-raises
            # after its 500, and the HTTP server then drops the connection, which fails the
            # client's next request on it (keep-alive).
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            self.metrics.error("internal")
            if answer.started:
                raise  # half a response is out: only closing the connection can end it
            await internal_error()(scope, receive, answer.send)
        self._record(scope, answer, started)

    def _match(self, scope: Scope) -> GatedRoute | None:
        path = _route_path(scope)
        for gated in self.routes:
            if scope["method"] in (gated.route.methods or ()) and gated.route.path_regex.match(path):
                return gated
        return None

    async def _pass(self, scope: Scope, receive: Receive, answer: _Answer) -> None:
        gated = self._match(scope)
        if gated is None:  # 404 or 405: the app answers without reading the body
            await self.app(scope, receive, answer.send)
            return
        answer.path = gated.route.path
        settings = scope["app"].state.settings  # read per request: settings can change
        headers = dict(scope.get("headers") or [])
        if gated.protected and not authorized(settings.api_key, headers.get(b"authorization", b"").decode("latin-1")):
            await self._refuse(Unauthorized(MESSAGE), scope, receive, answer)
            return
        if scope["method"] in ("GET", "OPTIONS"):
            await self.app(scope, receive, answer.send)
            return
        if b"json" not in headers.get(b"content-type", b""):
            # bodies are JSON whatever the client labels them (curl -d sends form encoding)
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-type"] + [
                (b"content-type", b"application/json")]
        reserved = 0  # of the in-flight budget, held until the answer is sent
        try:
            try:
                body, reserved = await self._read(scope, receive, headers.get(b"content-length"))
                if body:
                    scope[PARSED] = (await asyncio.to_thread(decode_json, body) if len(body) >= OFFLOAD_BYTES
                                     else decode_json(body))
            except (Overloaded, InvalidInput) as refused:  # 429, 413, a malformed body
                await self._refuse(refused, scope, receive, answer)
                return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, answer.send)
        finally:
            self.inflight -= reserved

    async def _read(self, scope: Scope, receive: Receive, declared: bytes | None) -> tuple[bytes, int]:
        """The whole body (at most the limit) and the share of the budget it holds (given back
        here if reading fails)."""
        max_body: int = scope["app"].state.settings.max_body_bytes
        too_large = PayloadTooLarge(f"the request body is larger than this server's limit of "
                                    f"{max_body} bytes (--max-body-bytes)")
        reserved = 0
        try:
            if declared is not None and declared.isdigit():
                if int(declared) > max_body:
                    raise too_large
                reserved = self._reserve(int(declared), reserved, scope)
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > max_body:
                    raise too_large
                if size > reserved:  # a chunked body, or more than it declared
                    reserved = self._reserve(size, reserved, scope)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks), reserved
        except BaseException:
            self.inflight -= reserved
            raise

    def _reserve(self, size: int, reserved: int, scope: Scope) -> int:
        """Grow this request's share of the in-flight body budget to ``size`` bytes, or refuse."""
        budget: int = scope["app"].state.settings.max_inflight_bytes
        if self.inflight > reserved and self.inflight - reserved + size > budget:  # alone, it always runs
            raise Overloaded(
                f"the server holds {self.inflight - reserved} bytes of request bodies and a body of {size} more "
                f"would pass its limit of {budget} (--max-inflight-bytes); retry later"
            )
        self.inflight += size - reserved
        return size

    async def _refuse(self, exc: CrossrankError, scope: Scope, receive: Receive, answer: _Answer) -> None:
        """Answer ``exc`` without calling the app, counted as an error of its kind."""
        self.metrics.error(exc.kind)
        await crossrank_response(exc)(scope, receive, answer.send)
        answer.status = status_of(exc)

    def _record(self, scope: Scope, answer: _Answer, started: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or answer.path or "unmatched"
        self.metrics.request(path, answer.status, time.perf_counter() - started)
