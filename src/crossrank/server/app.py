"""The app factory: one FastAPI app over the served models, one router per wire format.

Extra routes plug in as router factories (callables returning an ``APIRouter``)::

    from crossrank.server.app import DEFAULT_ROUTERS, create_app
    app = create_app(models, settings, routers=(*DEFAULT_ROUTERS, my_module.build_router))

A factory's routes read ``request.app.state.models`` / ``.settings`` / ``.metrics`` and
protect themselves with ``Depends(crossrank.server.auth.require_api_key)``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crossrank import __version__
from crossrank.errors import CrossrankError, InvalidInput, Overloaded
from crossrank.server import cohere, metarank, openai, tei, weaviate
from crossrank.server.common import ClientGone
from crossrank.server.config import ServerSettings
from crossrank.server.errors import PayloadTooLarge, crossrank_response, install_handlers, internal_error, status_of
from crossrank.server.metrics import Metrics
from crossrank.server.state import ServedModels
from crossrank.texts import may_hold_surrogates, surrogate_in

log = logging.getLogger(__name__)

RouterFactory = Callable[[], APIRouter]


def _info_router() -> APIRouter:
    router = APIRouter(tags=["Server"])

    @router.get("/models")
    async def models(request: Request) -> dict[str, Any]:
        """The models this server loaded, by name."""
        return {"models": request.app.state.models.describe()}

    @router.get("/metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: requests, errors, queue depth, batch sizes, tokens, latency."""
        body, content_type = request.app.state.metrics.render()
        return Response(body, media_type=content_type)

    return router


DEFAULT_ROUTERS: tuple[RouterFactory, ...] = (
    metarank.build_router,
    cohere.build_router,
    tei.build_router,
    weaviate.build_router,
    openai.build_router,
    _info_router,
)


def _unpaired_surrogate(body: bytes) -> InvalidInput | None:
    """Text that JSON can carry but Unicode cannot (see crossrank.texts), refused up front."""
    if not may_hold_surrogates(body):
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None  # the route answers 400 for a body that is not JSON
    message = surrogate_in(parsed)
    return None if message is None else InvalidInput(message)


class _Limits:
    """ASGI middleware: body size limit (413), a budget of request bodies held at once (429), text
    that is not Unicode (422), request metrics, dropped-client bookkeeping."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.inflight = 0  # bytes of request bodies reserved by requests not finished (one event loop)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        max_body: int = scope["app"].state.settings.max_body_bytes  # read per request: settings can change
        too_large = PayloadTooLarge(f"the request body is larger than this server's limit of "
                                    f"{max_body} bytes (--max-body-bytes)")
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if scope["method"] == "POST" and b"json" not in headers.get(b"content-type", b""):
            # bodies are JSON whatever the client labels them (curl -d sends form encoding)
            scope = dict(scope)
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-type"] + [
                (b"content-type", b"application/json")]
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            await crossrank_response(too_large)(scope, receive, send)
            self._record(scope, 413, started)
            return
        reserved = 0  # of the in-flight budget, released when the request ends
        try:
            try:
                if declared is not None and declared.isdigit():
                    reserved = self._reserve(int(declared), reserved, scope)
                # read the whole body first (at most the limit), then replay it to the app
                chunks: list[bytes] = []
                size = 0
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        self._record(scope, 499, started)
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > max_body:
                        await crossrank_response(too_large)(scope, receive, send)
                        self._record(scope, 413, started)
                        return
                    if size > reserved:  # a chunked body, or more than it declared
                        reserved = self._reserve(size, reserved, scope)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
            except Overloaded as busy:
                await self._refuse(busy, scope, receive, send, started)
                return
            await self._serve(scope, receive, send, b"".join(chunks), started)
        finally:
            self.inflight -= reserved

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

    async def _serve(self, scope: Scope, receive: Receive, send: Send, body: bytes, started: float) -> None:
        """Hand the request, its body read, to the app; answer what the app does not."""
        problem = _unpaired_surrogate(body)
        if problem is not None:
            await self._refuse(problem, scope, receive, send, started)
            return
        status = {"code": 500}
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                response_started = True
            await send(message)

        try:
            await self.app(scope, replay, tracking_send)
        except ClientGone:
            status["code"] = 499
            self.metrics.error("client_closed")
        except Exception:
            # Answered here and not re-raised: Starlette's own last-resort handler re-raises
            # after its 500, and the HTTP server then drops the connection, which fails the
            # client's next request on it (keep-alive).
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            self.metrics.error("internal")
            if response_started:
                raise  # half a response is out: only closing the connection can end it
            await internal_error()(scope, replay, tracking_send)
        self._record(scope, status["code"], started)

    async def _refuse(self, exc: CrossrankError, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        """Answer ``exc`` without calling the app, counted as an error of its kind."""
        self.metrics.error(exc.kind)
        await crossrank_response(exc)(scope, receive, send)
        self._record(scope, status_of(exc), started)

    def _record(self, scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        self.metrics.request(path, status, time.perf_counter() - started)


def create_app(
    models: ServedModels,
    settings: ServerSettings,
    *,
    routers: Sequence[RouterFactory] = DEFAULT_ROUTERS,
    metrics: Metrics | None = None,
) -> FastAPI:
    """An ASGI app serving ``models``; closing the app (lifespan end) stops their schedulers."""
    metrics = metrics or Metrics()
    metrics.bind(models)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.ready = True
        log.info("ready: serving %s", ", ".join(models.names()))
        try:
            yield
        finally:
            app.state.ready = False
            models.close()

    app = FastAPI(
        title="crossrank",
        version=__version__,
        description="Cross-encoder reranking and embeddings over the Metarank, Cohere/Jina, TEI, "
        "Weaviate and OpenAI wire formats.",
        lifespan=lifespan,
    )
    app.state.models = models
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.ready = False
    install_handlers(app)
    for factory in routers:
        app.include_router(factory())
    app.add_middleware(_Limits, metrics=metrics)
    return app
