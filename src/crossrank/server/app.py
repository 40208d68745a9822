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
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from crossrank import __version__
from crossrank.extras import require
from crossrank.server import cohere, cohere_embed, metarank, openai, tei, weaviate
from crossrank.server.config import ServerSettings
from crossrank.server.errors import install_handlers
from crossrank.server.gate import RequestGate, gated_routes
from crossrank.server.metrics import Metrics
from crossrank.server.state import ServedModels

log = logging.getLogger(__name__)

RouterFactory = Callable[[], APIRouter]

#: where the API docs pages' scripts and styles are served from (this server, never a CDN)
DOCS_ASSETS = "/docs-assets"


def _info_router() -> APIRouter:
    router = APIRouter(tags=["Server"])

    @router.get("/models")
    async def models(request: Request) -> dict[str, Any]:
        """The models this server loaded, by name."""
        return {"models": request.app.state.models.describe()}

    @router.get("/v1/models")
    async def openai_models(request: Request) -> dict[str, Any]:
        """The configured models (rerankers and bi-encoders) in OpenAI's list shape."""
        created = request.app.state.created
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "crossrank"}
                                           for name in request.app.state.models.names()]}

    @router.get("/metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: requests, errors, queue depth, batch sizes, tokens, latency."""
        body, content_type = request.app.state.metrics.render()
        return Response(body, media_type=content_type)

    return router


def _serve_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` and ReDoc at ``/redoc`` with their files served from this server (the
    dist files of swagger-ui 5 and redoc 2 that the package fastapi-offline ships), so the
    pages work offline; FastAPI's own pages load them from a CDN."""
    static = require("fastapi_offline", "server", "The API docs pages (/docs, /redoc)")
    app.mount(DOCS_ASSETS, StaticFiles(packages=[(static.__name__, "static")]), name="docs-assets")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json", title=f"{title} - Swagger UI",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}/openapi.json", title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png", with_google_fonts=False,
        )


DEFAULT_ROUTERS: tuple[RouterFactory, ...] = (
    metarank.build_router,
    cohere.build_router,
    cohere_embed.build_router,
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
        docs_url=None,  # served by _serve_docs, from local files
        redoc_url=None,
        redirect_slashes=False,  # a redirect's Location would come from the client's Host header
    )
    app.state.models = models
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.ready = False
    app.state.created = int(time.time())  # the "created" of /v1/models
    install_handlers(app)
    _serve_docs(app)
    built = [factory() for factory in routers]
    for router in built:
        app.include_router(router)
    app.add_middleware(RequestGate, metrics=metrics, routes=gated_routes(built))
    return app
