"""The typed seams: one token budget from the server's setting to each model call, the scheduler
over its protocol (a model-free stand-in is enough), and the deprecated names still answering."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from crossrank import Encoder, Reranker
from crossrank.errors import InvalidInput
from crossrank.options import LongDocuments, ScoreOptions
from crossrank.runtime.onnx import TOKENS_PER_THREAD
from crossrank.scheduler import BatchSettings, CrossScheduler, PairScorer
from crossrank.scores import Activation, Scores
from crossrank.server.config import ModelEntry, ServerSettings
from crossrank.server.state import load_served_models
from crossrank.tokenize import TokenRows

QUERY = "crocs clog"
LONG = "a long description of a leather boot that is nothing like a clog " * 4


def test_the_servers_max_batch_tokens_decides_each_model_call(bert_dir: Path, model_cache: Path) -> None:
    """``--max-batch-tokens`` used to bound the scheduler's batches only, which the runtime then cut
    again at its own budget (384 tokens per thread on the CPU): a larger setting changed nothing.
    It is now the runtime's budget, so it decides every model call."""
    settings = ServerSettings(cache_dir=str(model_cache), threads=1,
                              batch=BatchSettings(batch_size=64, max_batch_tokens=4096))
    calls: list[tuple[int, int]] = []
    served = load_served_models([ModelEntry("m", "cross-encoder", str(bert_dir))], settings,
                                observer=lambda name: lambda rows, tokens, _s: calls.append((rows, tokens)))
    pairs = [(QUERY, LONG)] * 40  # about 60 tokens each: 40 rows fit 4096 tokens, not 384
    try:
        cross = served.cross_model("m")
        result = asyncio.run(cross.scheduler.score(pairs))
    finally:
        served.close()
    assert calls == [(40, 40 * int(cross.reranker.tokenize(pairs).lengths.max()))]
    assert calls[0][1] > TOKENS_PER_THREAD  # one thread: past the runtime's old, hidden budget
    assert cross.reranker.max_batch_tokens == 4096
    np.testing.assert_allclose(result.values, cross.reranker.score_pairs(pairs), rtol=1e-6)


def test_max_batch_tokens_bounds_the_library_batches_and_keeps_the_scores(
    bert_dir: Path, model_cache: Path, bert_reranker: Reranker
) -> None:
    small = Reranker(bert_dir, cache_dir=model_cache, max_batch_tokens=64)
    pairs = [(QUERY, LONG[: 10 * i + 5]) for i in range(12)]
    rows = small.tokenize(pairs)
    batches = small.plan(rows.lengths)
    assert len(batches) > 1 and all(len(b) * int(rows.lengths[b].max()) <= 64 for b in batches)
    np.testing.assert_allclose(small.score_pairs(pairs), bert_reranker.score_pairs(pairs), rtol=1e-5, atol=1e-6)
    assert bert_reranker.max_batch_tokens is not None and bert_reranker.max_batch_tokens % TOKENS_PER_THREAD == 0
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InvalidInput, match="max_batch_tokens"):
            Reranker(bert_dir, cache_dir=model_cache, max_batch_tokens=bad)  # type: ignore[arg-type]


class LengthScorer:
    """A model-free :class:`PairScorer`: each row's logit is its length; its batches are two rows."""

    activation: Activation = "none"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def instruction_for(self, requested: str | None) -> str | None:
        return requested

    def tokenize(self, pairs: Sequence[tuple[str, str]], *, long_documents: LongDocuments | None = None,
                 max_windows: int | None = None, max_tokens: int | None = None,
                 instruction: str | None = None) -> TokenRows:
        ids = [[1] * (len(q) + len(d)) for q, d in pairs]
        return TokenRows(ids, [[0] * len(row) for row in ids], np.arange(len(ids)), np.zeros(len(ids), dtype=bool))

    def details(self, values: np.ndarray, truncated: np.ndarray, opts: ScoreOptions) -> Scores:
        return Scores(values, truncated)

    def plan(self, lengths: np.ndarray) -> list[np.ndarray]:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + 2] for i in range(0, len(order), 2)]

    def infer(self, rows: TokenRows, index: np.ndarray) -> np.ndarray:
        self.calls.append(len(index))
        logits: np.ndarray = rows.lengths[index].astype(np.float64)
        return logits


def test_the_scheduler_runs_any_pair_scorer_in_its_own_batches() -> None:
    """The scheduler needs only the :class:`PairScorer` seams: no model, no runtime."""
    scorer = LengthScorer()
    model: PairScorer = scorer
    scheduler = CrossScheduler("fake", model, BatchSettings(lookahead=8))
    requests = [[("q", "d" * n) for n in range(i, i + 5)] for i in range(4)]

    async def main() -> list[Scores]:
        return list(await asyncio.gather(*(scheduler.score(pairs) for pairs in requests)))

    try:
        results = asyncio.run(main())
    finally:
        scheduler.close()
    for pairs, result in zip(requests, results):
        np.testing.assert_array_equal(result.values, [len(q) + len(d) for q, d in pairs])
    assert scorer.calls and max(scorer.calls) <= 2 and sum(scorer.calls) == 20


def test_the_old_names_still_answer_with_a_deprecation_warning(
    bert_reranker: Reranker, minilm_encoder: Encoder
) -> None:
    pairs = [(QUERY, LONG)]
    with pytest.deprecated_call():
        assert bert_reranker.encode(pairs).ids == bert_reranker.tokenize(pairs).ids
    with pytest.deprecated_call():
        rows = minilm_encoder.encode(["a clog"])
    assert rows.ids == minilm_encoder.tokenize(["a clog"]).ids
    with pytest.deprecated_call():
        np.testing.assert_array_equal(minilm_encoder.embed_rows(rows), minilm_encoder.infer(rows))
