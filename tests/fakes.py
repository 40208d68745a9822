"""A fake runtime: scores from token ids alone, for scheduler and server tests of plumbing.

It has the runtime seam's shape (``name``, ``providers``, ``plan``, ``run``), so a real
:class:`~crossrank.Reranker` (real tokenizer, truncation, windows, activation) runs on it
unchanged; only the model is replaced. Its logit is a fixed function of the tokens a row
holds, exact in float64, so that it does not depend on padding, batch composition or order:
batched equals single, and a test can compute what any pair must score.

>>> import numpy as np
>>> runtime = FakeRuntime()
>>> ids = np.array([[101, 7, 102, 0], [101, 7, 102, 9]])
>>> mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]])
>>> logits = runtime.run({"input_ids": ids, "attention_mask": mask})
>>> logits.shape, logits.dtype
((2, 1), dtype('float32'))
>>> float(logits[0, 0]) == float(runtime.run({"input_ids": ids[:1, :3], "attention_mask": mask[:1, :3]})[0, 0])
True
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from crossrank import Reranker
from crossrank.tokenize import plan_batches

_STEPS = 1024  # token values are multiples of 1/_STEPS: sums of them are exact in float64


def token_values(ids: np.ndarray) -> np.ndarray:
    """A pseudo-random value in [-4, 4) per token id, a multiple of 1/1024 (Knuth's hash)."""
    hashed = (ids.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(8 * _STEPS)
    return hashed.astype(np.float64) / _STEPS - 4.0


def fake_logits(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One logit per row: the mean value of the row's real (unmasked) tokens."""
    values = token_values(ids) * mask
    counts = np.maximum(mask.sum(axis=1), 1)
    means: np.ndarray = values.sum(axis=1) / counts  # exact sums: no dependence on padding width
    return means


class FakeRuntime:
    """Runs no model: ``run`` returns :func:`fake_logits` as float32 ``(rows, 1)`` logits.

    It satisfies :class:`crossrank.runtime.base.Runtime`. ``plan`` makes the length-sorted
    batches of the ONNX runtime on the CPU (at most ``batch_size`` rows and ``max_batch_tokens``
    tokens with padding). ``batches`` records the ``(rows, width)`` shape of every run.
    """

    name = "fake"
    path = Path("fake.onnx")
    input_names = ("input_ids", "attention_mask")
    output = "logits"
    output_shape = (None, 1)

    def __init__(self, max_batch_tokens: int | None = None) -> None:
        self.providers: list[str] = ["FakeExecutionProvider"]
        self.max_batch_tokens = max_batch_tokens
        self.batches: list[tuple[int, int]] = []

    def plan(self, lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
        return plan_batches(lengths, batch_size, self.max_batch_tokens)

    def run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        ids, mask = feed["input_ids"], feed["attention_mask"]
        self.batches.append((int(ids.shape[0]), int(ids.shape[1])))
        return fake_logits(ids, mask).astype(np.float32)[:, None]


def with_fake_runtime(reranker: Reranker, max_batch_tokens: int | None = None) -> Reranker:
    """``reranker`` with its model replaced by a :class:`FakeRuntime` (tokenizer and options kept)."""
    reranker.runtime = FakeRuntime(max_batch_tokens)
    return reranker
