"""Metarank's inference API: ``/inference/cross/{name}`` and ``/inference/encoder/{name}``.

A cross request may carry ``instruction`` next to ``input`` (a crossrank extension: an LLM
reranker's prompt instruction); Metarank itself sends none, so the configured default applies.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from crossrank.server.auth import require_api_key
from crossrank.server.body import ParsedBodyRoute
from crossrank.server.common import Instruction, check_query, embed_texts, models_of, score_request, took_ms


class CrossPair(BaseModel):
    model_config = ConfigDict(extra="ignore")
    query: str = Field(min_length=1)
    text: str


class CrossRequest(BaseModel):
    input: list[CrossPair]
    instruction: Instruction


class CrossResponse(BaseModel):
    scores: list[float]
    took: int


class EncoderRequest(BaseModel):
    texts: list[str]


class EncoderResponse(BaseModel):
    embeddings: list[list[float]]
    took: int


def build_router() -> APIRouter:
    router = APIRouter(tags=["Metarank"], dependencies=[Depends(require_api_key)], route_class=ParsedBodyRoute)

    @router.post("/inference/cross/{name}", response_model=CrossResponse)
    async def cross(name: str, body: CrossRequest, request: Request) -> CrossResponse:
        """Scores of (query, text) pairs, in input order (Metarank's cross-encoder API)."""
        started = time.perf_counter()
        model = models_of(request).cross_model(name)
        pairs = [(check_query(p.query), p.text) for p in body.input]
        result = await score_request(request, model, pairs, instruction=body.instruction)
        return CrossResponse(scores=result.values.tolist(), took=took_ms(started))

    @router.post("/inference/encoder/{name}", response_model=EncoderResponse)
    async def encoder(name: str, body: EncoderRequest, request: Request) -> EncoderResponse:
        """Embeddings of texts, in input order (Metarank's bi-encoder API)."""
        started = time.perf_counter()
        model = models_of(request).bi_model(name)
        vectors = await embed_texts(request, model, body.texts)
        return EncoderResponse(embeddings=vectors.tolist(), took=took_ms(started))

    return router
