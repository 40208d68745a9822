"""OpenAI-style embeddings: ``POST /v1/embeddings``.

``input`` is a string, a list of strings, a list of token ids (one input) or a list of such
lists, as in OpenAI's API. Token ids are read as ids of the served model's own tokenizer and
fed to the model as given (no special tokens added, as text-embeddings-inference and vLLM do).
``usage`` counts the tokens the model embedded: special tokens included, after truncation.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from crossrank.encode import TokenIds
from crossrank.errors import InvalidInput, UnknownTokenId
from crossrank.server.auth import require_api_key
from crossrank.server.body import ParsedBodyRoute
from crossrank.server.common import embed_inputs, models_of

#: why ids from another vocabulary reach this server, and what to do about it
LANGCHAIN_HINT = (
    "token ids are read in the served model's own vocabulary; LangChain's OpenAIEmbeddings sends tiktoken ids "
    "(another vocabulary) unless it is made with check_embedding_ctx_length=False, which makes it send text"
)


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: str | list[str] | list[StrictInt] | list[list[StrictInt]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)


def _inputs(value: str | list[str] | list[int] | list[list[int]]) -> list[str] | TokenIds:
    """Texts, or token ids (one list of ints is one input)."""
    if isinstance(value, str):
        return [value]
    if value and isinstance(value[0], int):
        return TokenIds([value])
    if value and isinstance(value[0], list):
        return TokenIds(value)
    return value  # type: ignore[return-value]


def build_router() -> APIRouter:
    router = APIRouter(tags=["OpenAI"], dependencies=[Depends(require_api_key)], route_class=ParsedBodyRoute)

    @router.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest, request: Request) -> dict[str, Any]:
        """Embeddings in OpenAI's list shape; ``model`` selects a configured bi-encoder. ``usage``
        counts the tokens embedded (special tokens included, after truncation)."""
        model = models_of(request).bi_model(body.model)
        if body.dimensions is not None and body.dimensions != model.encoder.dim:
            raise InvalidInput(f"dimensions {body.dimensions} is not available: this model gives {model.encoder.dim}")
        inputs = _inputs(body.input)
        if isinstance(inputs, TokenIds):
            try:
                model.encoder.check_ids(inputs)
            except UnknownTokenId as exc:
                raise UnknownTokenId(f"{exc}; {LANGCHAIN_HINT}") from None
        result = await embed_inputs(request, model, inputs)
        data = []
        for i, vector in enumerate(result.vectors):
            value: Any = (base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
                          if body.encoding_format == "base64" else vector.tolist())
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = result.total_tokens
        return {"object": "list", "data": data, "model": model.entry.name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    return router
