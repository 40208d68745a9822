"""Weaviate's ``reranker-transformers`` module contract.

``POST /rerank`` ``{query, documents}`` -> ``{query, scores: [{document, score}]}`` in input
order (dispatched from the shared ``/rerank`` route, see :mod:`crossrank.server.tei`);
``GET /meta``; ``GET /.well-known/ready`` and ``/.well-known/live`` answer 204. The request may
carry ``instruction`` (a crossrank extension); Weaviate itself sends none, so the configured default applies.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from crossrank.errors import NotReady
from crossrank.server.common import Instruction, check_query, models_of, score_request


class WeaviateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    query: str = Field(min_length=1)
    documents: list[str]
    instruction: Instruction


async def weaviate_rerank(request: Request, body: WeaviateRequest) -> dict[str, Any]:
    model = models_of(request).cross_model(None)
    query = check_query(body.query)
    result = await score_request(request, model, [(query, doc) for doc in body.documents], instruction=body.instruction)
    return {
        "query": body.query,
        "scores": [{"document": doc, "score": float(s)} for doc, s in zip(body.documents, result.values)],
    }


def build_router() -> APIRouter:
    router = APIRouter(tags=["Weaviate"])

    @router.get("/.well-known/ready", status_code=204, response_class=Response)
    async def ready(request: Request) -> Response:
        """204 once the models are loaded and warm; 503 while starting or stopping."""
        if not request.app.state.ready:
            raise NotReady("the server is not ready")
        return Response(status_code=204)

    @router.get("/.well-known/live", status_code=204, response_class=Response)
    async def live() -> Response:
        """204 while the process is up."""
        return Response(status_code=204)

    @router.get("/meta")
    async def meta(request: Request) -> dict[str, Any]:
        """The default cross-encoder's description (Weaviate reads it at start-up)."""
        model = models_of(request).cross_model(None)
        return {"model": {**model.reranker.config.raw, "name": model.entry.model, "served_as": model.entry.name,
                          **model.reranker.describe()}}

    return router
