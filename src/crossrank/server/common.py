"""What every wire-format adapter shares: limits, deadlines, disconnect watching, scoring calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from crossrank.encode import Embedded, TokenIds
from crossrank.errors import ClientGone, InvalidInput, PayloadTooLarge
from crossrank.rerank import LongDocuments
from crossrank.scores import Activation, Scores
from crossrank.server.body import parsed_json
from crossrank.server.config import ServerSettings
from crossrank.server.metrics import Metrics
from crossrank.server.state import BiModel, CrossModel, ServedModels

#: per-request deadline header, in seconds (e.g. ``X-Request-Timeout: 2.5``)
DEADLINE_HEADER = "x-request-timeout"
MAX_DEADLINE_S = 600.0

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

#: the ``instruction`` extension field every rerank format accepts: the instruction in an LLM
#: reranker's prompt for this request (absent: the model's configured default); checked with the
#: library's own options (:func:`crossrank.options.check_instruction`) in :func:`score_request`
Instruction = Annotated[str | None, Field(
    default=None,
    description="crossrank extension: the instruction in an LLM reranker's prompt (e.g. Qwen3-Reranker) for this "
    "request; absent: the model's configured default. A model whose head reads no instruction answers 422.",
)]


def settings_of(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


def models_of(request: Request) -> ServedModels:
    models: ServedModels = request.app.state.models
    return models


def metrics_of(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def deadline_of(request: Request) -> float:
    """The monotonic instant this request must finish by (server default or the header)."""
    seconds = settings_of(request).deadline_s
    raw = request.headers.get(DEADLINE_HEADER)
    if raw is not None:
        try:
            seconds = float(raw)
        except ValueError:
            raise InvalidInput(f"header X-Request-Timeout must be a number of seconds, got {raw!r}") from None
        if not 0 < seconds <= MAX_DEADLINE_S:
            raise InvalidInput(f"header X-Request-Timeout must be in (0, {MAX_DEADLINE_S:g}] seconds")
    return time.monotonic() + seconds


def check_count(request: Request, count: int, what: str = "documents") -> None:
    limit = settings_of(request).max_documents
    if count > limit:
        raise PayloadTooLarge(f"{count} {what} in one request is above this server's limit of {limit} "
                              f"(--max-documents); split the request")


def check_query(query: str) -> str:
    if not query.strip():
        raise InvalidInput("query must not be empty")
    return query


async def read_json(request: Request) -> Any:
    """The body as JSON: 400 for bytes that are not UTF-8 JSON (see :mod:`crossrank.server.body`)."""
    return await parsed_json(request)


def parse(model: type[M], data: Any) -> M:
    """Validate ``data`` into ``model``; errors become the same 422 as FastAPI's own."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the client leaves first, cancel it (its queued rows are dropped)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if task in done:
        watcher.cancel()
        return task.result()
    task.cancel()
    raise ClientGone()


async def score_request(
    request: Request,
    model: CrossModel,
    pairs: Sequence[tuple[str, str]],
    *,
    activation: Activation | None = None,
    long_documents: LongDocuments | None = None,
    max_windows: int | None = None,
    max_tokens: int | None = None,
    instruction: str | None = None,
) -> Scores:
    """Score through the model's scheduler, with limits, deadline, disconnect and metrics.

    ``instruction`` is the request's own (``None``: the model's default); the scheduler refuses one
    that the model's head cannot read, or that leaves the document no room (422, with token counts)."""
    check_count(request, len(pairs), "pairs")
    deadline = deadline_of(request)
    result = await unless_disconnected(request, model.scheduler.score(
        pairs, activation=activation, long_documents=long_documents, max_windows=max_windows, max_tokens=max_tokens,
        instruction=instruction, deadline=deadline))
    metrics_of(request).scored(model.entry.name, len(pairs), int(result.truncated.sum()))
    return result


def scoring_details(result: Scores) -> dict[str, Any]:
    """The instruction and truncation a scoring call used, for formats with a place for metadata."""
    return {
        "instruction": result.instruction,
        "truncation": result.truncation.to_dict() if result.truncation is not None else None,
        "truncated_documents": result.truncated_count,
    }


async def embed_texts(request: Request, model: BiModel, texts: Sequence[str]) -> np.ndarray:
    return (await embed_inputs(request, model, texts)).vectors


async def embed_inputs(request: Request, model: BiModel, inputs: Sequence[str] | TokenIds) -> Embedded:
    """Embed through the model's scheduler, with limits, deadline, disconnect and metrics; the
    result counts the tokens each input took (what a route reports as usage)."""
    check_count(request, len(inputs), "texts")
    deadline = deadline_of(request)
    result = await unless_disconnected(request, model.scheduler.embed_details(inputs, deadline=deadline))
    metrics_of(request).scored(model.entry.name, len(inputs), int(result.truncated.sum()))
    return result


def took_ms(started: float) -> int:
    return int(round((time.perf_counter() - started) * 1000))

