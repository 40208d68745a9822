"""The seams a scheduler calls on a model: what :mod:`crossrank.scheduler` schedules.

:class:`~crossrank.Reranker` satisfies :class:`PairScorer` and :class:`~crossrank.Encoder`
satisfies :class:`TextEmbedder` structurally (mypy checks it where the server builds its
schedulers); a test's stand-in needs only these members, no model or runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from crossrank.options import LongDocuments, ScoreOptions
from crossrank.scores import Activation, Scores
from crossrank.tokenize import TokenRows

if TYPE_CHECKING:
    from crossrank.encode import TokenIds


class RowModel(Protocol):
    """What the inference thread runs: tokenized rows, in the model's own batches."""

    def plan(self, lengths: np.ndarray) -> list[np.ndarray]:
        """Rows of these lengths cut into the batches (index arrays into ``lengths``) that ``infer``
        runs: at most the model's batch size and ``max_batch_tokens`` each."""
        ...

    def infer(self, rows: TokenRows, index: np.ndarray) -> np.ndarray:
        """The model's results for ``rows[index]`` (one batch of :meth:`plan`), one per row."""
        ...


class PairScorer(RowModel, Protocol):
    """What :class:`CrossScheduler` schedules: a :class:`~crossrank.Reranker` (or a test's stand-in)."""

    @property
    def activation(self) -> Activation:
        """The activation of a call that names none."""
        ...

    def instruction_for(self, requested: str | None) -> str | None:
        """The instruction a call with ``requested`` uses; :class:`InvalidInput` if the model reads none."""
        ...

    def tokenize(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        long_documents: LongDocuments | None = None,
        max_windows: int | None = None,
        max_tokens: int | None = None,
        instruction: str | None = None,
    ) -> TokenRows:
        """The checked pairs' token rows (one per pair, or per window of a long document)."""
        ...

    def details(self, values: np.ndarray, truncated: np.ndarray, opts: ScoreOptions) -> Scores:
        """A call's :class:`Scores`, with the instruction and truncation it used."""
        ...


class TextEmbedder(RowModel, Protocol):
    """What :class:`EncoderScheduler` schedules: an :class:`~crossrank.Encoder` (or a test's stand-in)."""

    @property
    def dim(self) -> int:
        """The embedding size."""
        ...

    def tokenize(self, texts: Sequence[str] | TokenIds) -> TokenRows:
        """The checked texts (or token ids), one row each."""
        ...
