"""Cohere v1/v2 and Jina rerank: ``POST /v1/rerank`` and ``POST /v2/rerank``.

Documents are strings or objects; an object is scored on its ``text`` field, or on the
``rank_fields`` the request names (joined as ``field: value`` lines, as Cohere does).
``max_chunks_per_doc`` scores long documents as overlapping windows (at most that many, and
at most the model's own cap) and keeps each document's best window; ``max_tokens_per_doc``
cuts each document after that many tokens. Both are applied as the document is tokenized,
which reads only the head of a document that can be kept. Results are sorted by score and cut to ``top_n``.
``instruction`` (a crossrank extension) sets an LLM reranker's prompt instruction for the request;
``meta`` reports the instruction and truncation used.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from crossrank.errors import InvalidInput
from crossrank.scores import ranked_order
from crossrank.server.auth import require_api_key
from crossrank.server.body import ParsedBodyRoute
from crossrank.server.common import Instruction, check_query, models_of, score_request, scoring_details

#: a key in a /rerank body that marks the Cohere shape (rather than Weaviate's)
COHERE_KEYS = ("model", "top_n", "return_documents", "rank_fields", "max_chunks_per_doc", "max_tokens_per_doc")


#: documents one Cohere search unit covers
SEARCH_UNIT_DOCUMENTS = 100


class CohereRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    query: str = Field(min_length=1)
    documents: list[str | dict[str, Any]]
    model: str | None = None
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False
    rank_fields: list[str] | None = None
    max_chunks_per_doc: int | None = Field(default=None, ge=1)
    max_tokens_per_doc: int | None = Field(default=None, ge=1)
    instruction: Instruction


def search_units(documents: int) -> int:
    """What Cohere bills a rerank: one search unit per query and up to 100 documents."""
    return max(1, -(-documents // SEARCH_UNIT_DOCUMENTS))


def document_text(doc: str | dict[str, Any], index: int, rank_fields: list[str] | None) -> str:
    if isinstance(doc, str):
        return doc
    if rank_fields:
        missing = [f for f in rank_fields if f not in doc]
        if len(missing) == len(rank_fields):
            raise InvalidInput(f"documents[{index}] has none of the rank_fields {rank_fields}")
        return "\n".join(f"{f}: {_as_text(doc[f])}" for f in rank_fields if f in doc)
    text = doc.get("text")
    if not isinstance(text, str):
        raise InvalidInput(f"documents[{index}] is an object without a string 'text' field (or name rank_fields)")
    return text


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


async def cohere_rerank(request: Request, body: CohereRequest, version: str) -> dict[str, Any]:
    model = models_of(request).cross_model(body.model)
    query = check_query(body.query)
    texts = [document_text(doc, i, body.rank_fields) for i, doc in enumerate(body.documents)]
    window = body.max_chunks_per_doc is not None and body.max_chunks_per_doc > 1
    # the cut after max_tokens_per_doc is the tokenizer's, which reads only what it keeps
    result = await score_request(
        request, model, [(query, text) for text in texts],
        long_documents="window" if window else None,
        max_windows=body.max_chunks_per_doc if window else None,
        max_tokens=body.max_tokens_per_doc,
        instruction=body.instruction,
    )
    results = []
    for i in ranked_order(result.values, body.top_n):
        item: dict[str, Any] = {"index": i, "relevance_score": float(result.values[i])}
        if body.return_documents:
            doc = body.documents[i]
            item["document"] = doc if isinstance(doc, dict) else {"text": doc}
        results.append(item)
    return {
        "id": str(uuid.uuid4()),
        "results": results,
        "model": model.entry.name,
        "meta": {"api_version": {"version": version}, "billed_units": {"search_units": search_units(len(texts))},
                 **scoring_details(result)},
    }


def build_router() -> APIRouter:
    router = APIRouter(tags=["Cohere / Jina"], dependencies=[Depends(require_api_key)], route_class=ParsedBodyRoute)

    @router.post("/v1/rerank")
    async def rerank_v1(body: CohereRequest, request: Request) -> dict[str, Any]:
        """Cohere v1 (and Jina) rerank: results sorted by relevance_score, cut to top_n."""
        return await cohere_rerank(request, body, "1")

    @router.post("/v2/rerank")
    async def rerank_v2(body: CohereRequest, request: Request) -> dict[str, Any]:
        """Cohere v2 rerank: results sorted by relevance_score, cut to top_n."""
        return await cohere_rerank(request, body, "2")

    return router
