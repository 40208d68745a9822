"""Hugging Face text-embeddings-inference (TEI): ``/rerank``, ``/embed``, ``/info``, ``/health``.

``POST /rerank`` is shared by three formats and told apart by its keys:

* ``texts`` -> TEI: a bare array ``[{index, score, text?}]`` sorted by score;
* ``documents`` plus any Cohere key (``model``, ``top_n``, ``return_documents``,
  ``rank_fields``, ``max_chunks_per_doc``, ``max_tokens_per_doc``) -> the Cohere shape
  (as llama.cpp's server does);
* ``documents`` alone (with ``query``) -> Weaviate: ``{query, scores:[{document, score}]}``
  in input order.

Each accepts ``instruction`` (a crossrank extension: an LLM reranker's prompt instruction).
``/info`` describes the default model in TEI's shape, plus every served model under ``models``
(template family, default instruction, max_length, what truncation cuts).
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from crossrank import __version__
from crossrank.errors import InvalidInput, NotReady, PayloadTooLarge
from crossrank.scores import ranked_order
from crossrank.server.auth import require_api_key
from crossrank.server.body import ParsedBodyRoute
from crossrank.server.cohere import COHERE_KEYS, CohereRequest, cohere_rerank
from crossrank.server.common import (
    Instruction,
    check_count,
    check_query,
    embed_texts,
    models_of,
    parse,
    read_json,
    score_request,
    settings_of,
)
from crossrank.server.weaviate import WeaviateRequest, weaviate_rerank

Direction = Literal["Right", "Left", "right", "left"]


class TeiRerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    query: str = Field(min_length=1)
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None
    truncation_direction: Direction = "Right"
    instruction: Instruction


class TeiEmbedRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    inputs: str | list[str]
    normalize: bool = True
    truncate: bool | None = None
    truncation_direction: Direction = "Right"


def _check_direction(direction: str) -> None:
    if direction.lower() != "right":
        raise InvalidInput("truncation_direction 'Left' is not supported: documents are cut at the end")


def _refuse_cut(truncated: np.ndarray, limit: str) -> None:
    """TEI's ``"truncate": false``: texts that would be cut are a 413 naming them."""
    if truncated.any():
        too_long = [int(i) for i in np.flatnonzero(truncated)]
        raise PayloadTooLarge(
            f"texts {too_long[:10]} do not fit in {limit} and 'truncate' is false; "
            f"send 'truncate': true (or omit it) to cut them"
        )


async def tei_rerank(request: Request, body: TeiRerankRequest) -> list[dict[str, Any]]:
    _check_direction(body.truncation_direction)
    model = models_of(request).cross_model(None)
    query = check_query(body.query)
    tokenizer = model.reranker.tokenizer
    if body.truncate is False and tokenizer.fit_queries([query])[0][1]:  # reads at most the kept head
        raise PayloadTooLarge(f"the query is longer than {tokenizer.query_limit} tokens (half of "
                              f"{model.reranker.max_length} with the texts) and 'truncate' is false; "
                              f"send 'truncate': true (or omit it) to cut it")
    result = await score_request(request, model, [(query, text) for text in body.texts],
                               activation="none" if body.raw_scores else "sigmoid", instruction=body.instruction)
    if body.truncate is False:
        _refuse_cut(result.truncated, f"{model.reranker.max_length} tokens with the query")
    out = []
    for i in ranked_order(result.values):
        item: dict[str, Any] = {"index": i, "score": float(result.values[i])}
        if body.return_text:
            item["text"] = body.texts[i]
        out.append(item)
    return out


_RERANK_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"oneOf": [
        TeiRerankRequest.model_json_schema(),
        CohereRequest.model_json_schema(),
        WeaviateRequest.model_json_schema(),
    ]}}},
}


def build_router() -> APIRouter:
    router = APIRouter(tags=["TEI / Weaviate / llama.cpp"], route_class=ParsedBodyRoute)
    protected = [Depends(require_api_key)]

    @router.post("/rerank", dependencies=protected, openapi_extra={"requestBody": _RERANK_BODY})
    async def rerank(request: Request) -> Any:
        """TEI (``texts``), Cohere (``documents`` + a Cohere key) or Weaviate (``documents``)."""
        data = await read_json(request)
        if not isinstance(data, dict):
            raise InvalidInput("the body must be a JSON object with 'query' and 'texts' or 'documents'")
        if "texts" in data:
            return await tei_rerank(request, parse(TeiRerankRequest, data))
        if "documents" in data and any(key in data for key in COHERE_KEYS):
            return await cohere_rerank(request, parse(CohereRequest, data), "2")
        if "documents" in data:
            return await weaviate_rerank(request, parse(WeaviateRequest, data))
        raise InvalidInput("the body needs 'texts' (TEI) or 'documents' (Cohere, Weaviate) next to 'query'")

    @router.post("/embed", dependencies=protected)
    async def embed(body: TeiEmbedRequest, request: Request) -> list[list[float]]:
        """TEI embeddings of ``inputs`` (one string or a list), L2-normalised by default."""
        _check_direction(body.truncation_direction)
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        model = models_of(request).bi_model(None)
        if body.truncate is False:
            check_count(request, len(texts), "texts")  # before tokenizing them
            rows = await asyncio.to_thread(model.encoder.tokenizer.encode_texts, texts)
            _refuse_cut(rows.truncated, f"{model.encoder.max_length} tokens")
        vectors = await embed_texts(request, model, texts)
        if body.normalize and len(vectors):
            vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        result: list[list[float]] = vectors.tolist()
        return result

    @router.get("/health", response_class=Response)
    async def health(request: Request) -> Response:
        """200 when the models are loaded and the server takes requests, 503 otherwise."""
        if not request.app.state.ready:
            raise NotReady("the server is not ready")
        return Response(status_code=200)

    @router.get("/info")
    async def info(request: Request) -> dict[str, Any]:
        """TEI's server description, for the default cross-encoder (or bi-encoder)."""
        models = models_of(request)
        settings = settings_of(request)
        if models.cross:
            cross = models.cross_model(None)
            model_id, max_input, max_batch_tokens = cross.entry.model, cross.reranker.max_length, \
                cross.reranker.max_batch_tokens
            model_type: dict[str, Any] = {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}
        else:
            bi = models.bi_model(None)
            model_id, max_input, max_batch_tokens = bi.entry.model, bi.encoder.max_length, bi.encoder.max_batch_tokens
            model_type = {"embedding": {"pooling": bi.encoder.pooling}}
        return {
            "model_id": model_id,
            "model_sha": None,
            "model_dtype": "float32",
            "model_type": model_type,
            "max_concurrent_requests": settings.batch.max_queue,
            "max_input_length": max_input,
            "max_batch_tokens": max_batch_tokens,  # the model's budget in effect (None: no bound)
            "max_batch_requests": None,
            "max_client_batch_size": settings.max_documents,
            "tokenization_workers": settings.tokenizer_threads,
            "version": f"crossrank {__version__}",
            "models": models.describe(),  # crossrank's extension: each model's prompt and truncation
        }

    return router
