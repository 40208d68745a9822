"""The checks on scoring options, in one place for the library and the server's scheduler.

Every bad value is an :class:`~crossrank.errors.InvalidInput` naming the argument, raised
before any work: ``max_windows=0`` once scored nothing (0.0), ``-1`` dropped a window, and
an unknown ``long_documents`` fell back to truncation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from crossrank.errors import InvalidInput
from crossrank.scores import Activation, check_activation
from crossrank.texts import check_text

log = logging.getLogger(__name__)

LongDocuments = Literal["truncate", "window"]
LONG_DOCUMENTS = ("truncate", "window")


def whole_number(value: Any, name: str, minimum: int) -> int:
    """``value`` if it is a whole number (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInput(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def check_long_documents(value: Any, name: str = "long_documents") -> LongDocuments:
    if value not in LONG_DOCUMENTS:
        raise InvalidInput(f"{name} must be 'truncate' or 'window', not {value!r}")
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ScoreOptions:
    """Per-call options of a scoring call; ``None`` keeps the scorer's default.

    ``max_windows``: at most this many windows per document (window mode); ``max_tokens``:
    each document cut after that many tokens first (Cohere's ``max_tokens_per_doc``);
    ``instruction``: the instruction in an LLM reranker's prompt.
    """

    activation: Activation | None = None
    long_documents: LongDocuments | None = None
    max_windows: int | None = None
    max_tokens: int | None = None
    instruction: str | None = None


def check_options(
    *, activation: Any = None, long_documents: Any = None, max_windows: Any = None, max_tokens: Any = None,
    instruction: Any = None,
) -> ScoreOptions:
    """The options, checked."""
    return ScoreOptions(
        activation=None if activation is None else check_activation(activation),
        long_documents=None if long_documents is None else check_long_documents(long_documents),
        max_windows=None if max_windows is None else whole_number(max_windows, "max_windows", 1),
        max_tokens=None if max_tokens is None else whole_number(max_tokens, "max_tokens", 1),
        instruction=check_instruction(instruction),
    )


def check_instruction(value: Any) -> str | None:
    """``None`` (the model's default) or a non-empty string of Unicode text."""
    if value is None:
        return None
    text = check_text(value, "instruction")
    if not text.strip():
        raise InvalidInput("instruction must not be empty; leave it out for the model's default")
    return text


def instruction_in_effect(requested: str | None, default: str | None, model: str, head: str,
                          reads: bool) -> str | None:
    """The instruction a call puts in the prompt: ``requested``, else the model's ``default``
    (``None`` where the family has none, e.g. mxbai-rerank-v2).

    ``reads`` is False for a model whose head reads no instruction (any cross-encoder that is
    not an LLM yes/no reranker): an instruction given to it is refused, never silently ignored.
    """
    if requested is None:
        return default
    if not reads:
        raise InvalidInput(
            f"{model} takes no instruction: it scores with {head}, which reads none; only an instruction-capable "
            f"head (an LLM yes/no reranker such as Qwen3-Reranker) does. Leave 'instruction' out for this model."
        )
    return requested


def check_top_k(value: Any) -> int | None:
    return None if value is None else whole_number(value, "top_k", 0)


def check_window_stride(value: Any, max_length: int, pair_overhead: int) -> int:
    """Tokens shared by consecutive windows: fewer than the shortest document part of a window
    (half the pair's budget, next to the longest query kept)."""
    room = max_length - pair_overhead - (max_length - pair_overhead) // 2
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < room:
        raise InvalidInput(f"window_stride must be a whole number from 0 to {room - 1} "
                           f"(fewer tokens than a window holds at max_length {max_length}), got {value!r}")
    return int(value)


def check_max_length(requested: Any, model_limit: int, model: str) -> int:
    """Tokens per input: ``requested`` (default: the model's limit), capped at the model's
    limit with a warning (the model has no position embeddings past it)."""
    if requested is None:
        return model_limit
    value = whole_number(requested, "max_length", 8)
    if value > model_limit:
        log.warning("max_length %d is above the limit of model %s (%d tokens); using %d",
                    value, model, model_limit, model_limit)
        return model_limit
    return value
