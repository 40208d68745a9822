"""Cohere embeddings: ``POST /v2/embed`` and ``POST /v1/embed`` over a configured bi-encoder.

``embedding_types`` may name ``float``, ``binary`` and ``ubinary`` (the signs of the float
embedding packed 8 to a byte, as signed or unsigned bytes: Cohere's and sentence-transformers'
definition). ``int8`` and ``uint8`` need per-model calibration ranges this server does not have:
they are refused with a 422 rather than computed from the request's own values (which would
give one text different vectors in different requests). ``input_type`` is accepted and does not
change the embedding (the model has no per-type prompts). ``truncate`` is ``END`` (the default:
a text is cut after the model's ``max_length`` tokens) or ``NONE`` (a text that would be cut is a
413). ``meta.billed_units.input_tokens`` counts the tokens embedded, special tokens included,
after truncation.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from crossrank.errors import InvalidInput, PayloadTooLarge
from crossrank.server.auth import require_api_key
from crossrank.server.body import ParsedBodyRoute
from crossrank.server.common import embed_inputs, models_of

EmbeddingType = Literal["float", "int8", "uint8", "binary", "ubinary", "base64"]
SUPPORTED_TYPES = ("float", "binary", "ubinary")


class CohereEmbedRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    texts: list[str]
    model: str | None = None
    input_type: Literal["search_document", "search_query", "classification", "clustering"] | None = None
    embedding_types: list[EmbeddingType] | None = None
    truncate: Literal["NONE", "START", "END"] = "END"
    max_tokens: int | None = Field(default=None, ge=1)
    output_dimension: int | None = Field(default=None, ge=1)
    images: list[Any] | None = None


def _check_types(types: list[EmbeddingType]) -> None:
    unsupported = [t for t in types if t not in SUPPORTED_TYPES]
    if unsupported:
        raise InvalidInput(f"embedding_types {unsupported} are not supported here; use {list(SUPPORTED_TYPES)} "
                           f"(int8 and uint8 need calibration ranges this model does not have)")


def embedding_types(vectors: np.ndarray, types: list[EmbeddingType]) -> dict[str, Any]:
    """The embeddings in each requested type (checked by ``_check_types``)."""
    out: dict[str, Any] = {}
    for kind in dict.fromkeys(types):
        if kind == "float":
            out[kind] = vectors.tolist()
        else:
            packed = np.packbits(vectors > 0, axis=1)
            out[kind] = packed.tolist() if kind == "ubinary" else (packed.astype(np.int16) - 128).tolist()
    return out


async def cohere_embed(request: Request, body: CohereEmbedRequest, version: str) -> dict[str, Any]:
    model = models_of(request).bi_model(body.model)
    encoder = model.encoder
    if body.images:
        raise InvalidInput("images are not supported: this server embeds texts")
    if body.truncate == "START":
        raise InvalidInput("truncate 'START' is not supported: texts are cut at the end (send 'END' or 'NONE')")
    if body.output_dimension is not None and body.output_dimension != encoder.dim:
        raise InvalidInput(f"output_dimension {body.output_dimension} is not available: this model gives {encoder.dim}")
    if body.max_tokens is not None and body.max_tokens < encoder.max_length:
        raise InvalidInput(f"max_tokens below the model's max_length ({encoder.max_length}) is not supported")
    types = body.embedding_types or ["float"]
    _check_types(types)
    result = await embed_inputs(request, model, body.texts)
    if body.truncate == "NONE" and result.truncated.any():
        too_long = [int(i) for i in np.flatnonzero(result.truncated)]
        raise PayloadTooLarge(f"texts {too_long[:10]} are longer than {encoder.max_length} tokens and truncate is "
                              f"'NONE'; send 'END' (or omit it) to cut them")
    by_type = body.embedding_types is not None or version == "2"
    return {
        "id": str(uuid.uuid4()),
        "embeddings": embedding_types(result.vectors, types) if by_type else result.vectors.tolist(),
        "texts": body.texts,
        "meta": {"api_version": {"version": version}, "billed_units": {"input_tokens": result.total_tokens}},
        "response_type": "embeddings_by_type" if by_type else "embeddings_floats",
    }


def build_router() -> APIRouter:
    router = APIRouter(tags=["Cohere / Jina"], dependencies=[Depends(require_api_key)], route_class=ParsedBodyRoute)

    @router.post("/v1/embed")
    async def embed_v1(body: CohereEmbedRequest, request: Request) -> dict[str, Any]:
        """Cohere v1 embed: a list of float embeddings, or ``{type: [...]}`` when ``embedding_types`` is set."""
        return await cohere_embed(request, body, "1")

    @router.post("/v2/embed")
    async def embed_v2(body: CohereEmbedRequest, request: Request) -> dict[str, Any]:
        """Cohere v2 embed: ``embeddings`` by type (``float`` unless ``embedding_types`` names others)."""
        return await cohere_embed(request, body, "2")

    return router
