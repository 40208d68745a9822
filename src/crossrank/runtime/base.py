"""The seam between the models and the inference libraries: what a runtime must offer.

A runtime sees token-id arrays only. :class:`Runtime` is what :class:`~crossrank.Reranker`
and :class:`~crossrank.Encoder` call; each runtime module (``onnx``, ``openvino``, ``torch``)
satisfies it structurally, and mypy checks that where each is built. A new runtime (or a test
fake) needs only these members.

One token budget bounds every batch a model runs: ``max_batch_tokens``, the tokens of one
inference call counting padding (rows × the longest row). It is the runtime's, set from
``Reranker(max_batch_tokens=...)``, ``Encoder(max_batch_tokens=...)`` or the server's
``--max-batch-tokens``; by default each runtime derives it from its threads on the CPU (small
batches keep activations in the cores' caches) and uses a large one on a GPU.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from crossrank.errors import InvalidInput


class Runtime(Protocol):
    """One loaded model graph that runs padded token-id batches; ``run`` is safe from several threads."""

    @property
    def name(self) -> str:
        """``"onnxruntime"``, ``"openvino"``, ``"torch"``, or a test fake's name."""
        ...

    @property
    def providers(self) -> Sequence[str]:
        """Where it runs, for descriptions (ONNX Runtime's provider names, or e.g. ``"torch cuda (f16)"``)."""
        ...

    @property
    def path(self) -> Path:
        """The graph file (or weights directory) it runs."""
        ...

    @property
    def input_names(self) -> Sequence[str]:
        """The arrays ``run`` feeds to the model (``input_ids``, ``attention_mask``, ...)."""
        ...

    @property
    def output(self) -> str:
        """The name of the output ``run`` returns (for messages)."""
        ...

    @property
    def output_shape(self) -> Sequence[int | str | None] | None:
        """The declared shape of the output ``run`` returns (names or None for dynamic axes); None
        where the runtime has no graph to read it from (torch)."""
        ...

    @property
    def max_batch_tokens(self) -> int | None:
        """Most tokens one ``run`` call holds, padding counted (rows × longest row); None: no bound."""
        ...

    def plan(self, lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
        """Rows of these lengths cut into batches (index arrays into ``lengths``) of at most
        ``batch_size`` rows and :attr:`max_batch_tokens` tokens, in the shapes this runtime runs best."""
        ...

    def run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        """The model's output (logits or hidden states) for one padded batch of token-id arrays."""
        ...


def check_max_batch_tokens(value: int | None) -> int | None:
    """``None`` (the runtime's default) or a whole number of tokens, at least 1."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidInput(f"max_batch_tokens must be a whole number >= 1 (omit it for the runtime's default, "
                           f"derived from its threads), got {value!r}")
    return value


def tokens_per_threads(per_thread: int, threads: int | None) -> int:
    """The default CPU budget: ``per_thread`` tokens for each inference thread (all cores when None)."""
    return per_thread * int(threads or os.cpu_count() or 1)
