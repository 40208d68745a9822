"""From logits to scores, in float64."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from crossrank.errors import InvalidInput, ModelError

Activation = Literal["sigmoid", "none"]
ACTIVATIONS = ("sigmoid", "none")


@dataclass(frozen=True)
class Truncation:
    """How a scoring call fitted its pairs into the model: what was cut, where, and by which limits.

    ``cut`` says what may lose tokens: ``"document only"`` for an LLM reranker (its prompt
    template, instruction and query are never cut; a pair they leave no room in is refused),
    else the document, and a query longer than ``query_limit`` tokens cut to it. Documents are
    cut at their end (``side="right"``); ``long_documents="window"`` scores overlapping windows
    sharing ``window_stride`` tokens instead (at most ``max_windows`` per document);
    ``max_tokens`` cuts each document after that many tokens first.
    """

    max_length: int
    cut: str
    query_limit: int | None
    long_documents: str
    window_stride: int
    max_windows: int | None = None
    max_tokens: int | None = None
    side: str = "right"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Scores:
    """Scores in input order, which pairs had their document (or query) cut, and the
    instruction and truncation the call used (``instruction`` is ``None`` for a model whose
    head reads none)."""

    values: np.ndarray
    truncated: np.ndarray
    instruction: str | None = None
    truncation: Truncation | None = None

    @property
    def truncated_count(self) -> int:
        return int(self.truncated.sum())


def check_activation(activation: str) -> Activation:
    if activation not in ACTIVATIONS:
        raise InvalidInput(f"activation must be one of {ACTIVATIONS}, not {activation!r}")
    return activation  # type: ignore[return-value]


def relevance_logit(logits: np.ndarray) -> np.ndarray:
    """One relevance logit per row, in float64.

    One label: the logit itself. Two labels: ``l1 - l0``, whose sigmoid equals the softmax
    probability of the positive label (so a single logit is never softmaxed).
    """
    values = np.asarray(logits, dtype=np.float64)
    if values.ndim == 1:
        return values
    if values.ndim != 2 or values.shape[1] not in (1, 2):
        raise ModelError(
            f"a reranker must output one or two logits per pair; this model outputs shape "
            f"{tuple(values.shape)}"
        )
    if values.shape[1] == 1:
        return values[:, 0]
    return values[:, 1] - values[:, 0]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function in float64."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def activate(logit: np.ndarray, activation: Activation) -> np.ndarray:
    return sigmoid(logit) if activation == "sigmoid" else np.asarray(logit, dtype=np.float64)


def max_per_owner(values: np.ndarray, owner: np.ndarray, count: int) -> np.ndarray:
    """Maximum of ``values`` per owner index (windows -> documents)."""
    out = np.full(count, -np.inf, dtype=np.float64)
    np.maximum.at(out, owner, values)
    return out


def ranked_order(scores: np.ndarray, top_k: int | None = None) -> list[int]:
    """Indices best first (ties keep input order), cut to ``top_k``."""
    if top_k is not None and top_k < 0:
        raise InvalidInput("top_k must be >= 0")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [int(i) for i in (order if top_k is None else order[:top_k])]
