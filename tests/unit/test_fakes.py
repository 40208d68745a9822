"""The fake runtime keeps the properties that scheduler and server tests rely on."""

from __future__ import annotations

import numpy as np

from crossrank import Reranker
from fakes import FakeRuntime, fake_logits

DOCS = ["Crocs Kids' Baya Clog", "leather boots", "a sandal for the beach", "", "crocs " * 200]


def test_scores_do_not_depend_on_batching_or_order(fake_reranker: Reranker) -> None:
    pairs = [("crocs clog", d) for d in DOCS]
    together = fake_reranker.score_pairs(pairs, activation="none")
    alone = np.array([fake_reranker.score_pairs([p], activation="none")[0] for p in pairs])
    reversed_ = fake_reranker.score_pairs(pairs[::-1], activation="none")[::-1]
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(together, reversed_)
    assert len(set(together.tolist())) == len(DOCS)  # documents are told apart


def test_the_logit_reads_only_unmasked_tokens() -> None:
    ids = np.array([[5, 6, 7, 0, 0], [5, 6, 7, 99, 98]])
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0]])
    logits = fake_logits(ids, mask)
    assert logits[0] == logits[1] == fake_logits(ids[:1, :3], mask[:1, :3])[0]


def test_plan_keeps_the_row_and_token_budgets() -> None:
    runtime = FakeRuntime(max_batch_tokens=40)
    lengths = np.array([30, 5, 12, 8, 20, 3])
    plan = runtime.plan(lengths, 3)
    assert sorted(np.concatenate(plan).tolist()) == list(range(len(lengths)))
    for batch in plan:
        assert len(batch) <= 3 and (len(batch) == 1 or len(batch) * lengths[batch].max() <= 40)
