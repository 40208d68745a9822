"""The app factory: one FastAPI app over the served models, one router per wire format.

Extra routes plug in as router factories (callables returning an ``APIRouter``)::

    from crossrank.server.app import DEFAULT_ROUTERS, create_app
    app = create_app(models, settings, routers=(*DEFAULT_ROUTERS, my_module.build_router))

A factory's routes read ``request.app.state.models`` / ``.settings`` / ``.metrics`` and
protect themselves with ``Depends(crossrank.server.auth.require_api_key)``, which the request
gate (:mod:`crossrank.server.gate`) checks before it reads a body. A router made with
``route_class=crossrank.server.body.ParsedBodyRoute`` gets its JSON bodies parsed once, by the gate.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from crossrank import __version__
from crossrank.server import cohere, metarank, openai, tei, weaviate
from crossrank.server.config import ServerSettings
from crossrank.server.errors import install_handlers
from crossrank.server.gate import RequestGate, gated_routes
from crossrank.server.metrics import Metrics
from crossrank.server.state import ServedModels

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
        redirect_slashes=False,  # a redirect's Location would come from the client's Host header
    )
    app.state.models = models
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.ready = False
    install_handlers(app)
    built = [factory() for factory in routers]
    for router in built:
        app.include_router(router)
    app.add_middleware(RequestGate, metrics=metrics, routes=gated_routes(built))
    return app
