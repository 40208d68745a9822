"""OpenAI-style embeddings: ``POST /v1/embeddings``."""

from __future__ import annotations

import base64
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from crossrank.errors import InvalidInput
from crossrank.server.auth import require_api_key
from crossrank.server.body import ParsedBodyRoute
from crossrank.server.common import embed_texts, models_of


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)


def build_router() -> APIRouter:
    router = APIRouter(tags=["OpenAI"], dependencies=[Depends(require_api_key)], route_class=ParsedBodyRoute)

    @router.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest, request: Request) -> dict[str, Any]:
        """Embeddings in OpenAI's list shape; ``model`` selects a configured bi-encoder."""
        model = models_of(request).bi_model(body.model)
        if body.dimensions is not None and body.dimensions != model.encoder.dim:
            raise InvalidInput(f"dimensions {body.dimensions} is not available: this model gives {model.encoder.dim}")
        texts = [body.input] if isinstance(body.input, str) else body.input
        vectors = await embed_texts(request, model, texts)
        data = []
        for i, vector in enumerate(vectors):
            value: Any = (base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
                          if body.encoding_format == "base64" else vector.tolist())
            data.append({"object": "embedding", "index": i, "embedding": value})
        return {"object": "list", "data": data, "model": model.entry.name}

    return router
