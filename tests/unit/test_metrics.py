"""Metrics from ir-measures against values computed by hand on a tiny qrels/run pair.

The pair has graded relevance (grades 2 and 1), a score tie that trec_eval would break the
other way, an unjudged document, a query with no relevant document, a judged query the run
does not answer, a run-only query, and a relevant document between rank 10 and rank 100.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from crossrank.errors import InvalidInput
from crossrank.evaluate.metrics import evaluate
from crossrank.evaluate.trec import read_run

QRELS = {
    "q1": {"d1": 2, "d2": 1, "d3": 0, "d4": 1},
    "q2": {"d5": 0},  # no relevant document
    "q3": {"d9": 1},  # judged, but the run has nothing for it
    "q5": {"e1": 1, "e2": 1},
}

# d1 and d2 tie on score; the rank column puts d1 first (trec_eval alone would put d2 first,
# since it breaks ties by document id, descending). d7 is unjudged. q4 has no qrels.
RUN_TEXT = """\
q1 Q0 d3 1 3.0 t
q1 Q0 d1 2 2.0 t
q1 Q0 d2 3 2.0 t
q1 Q0 d7 4 1.0 t
q1 Q0 d4 5 0.5 t
q2 Q0 d5 1 0.9 t
q4 Q0 d1 1 5.0 t
""" + "".join(f"q5 Q0 x{i} {i} {100 - i}.0 t\n" for i in range(1, 12)) + "q5 Q0 e1 12 50.0 t\n"


def log2(x: float) -> float:
    return math.log2(x)


# q1 ranking: d3 (0), d1 (2), d2 (1), d7 (-), d4 (1): relevant at ranks 2, 3, 5
Q1_NDCG = (2 / log2(3) + 1 / log2(4) + 1 / log2(6)) / (2 / log2(2) + 1 / log2(3) + 1 / log2(4))
Q1_RR = 1 / 2
Q1_AP = (1 / 2 + 2 / 3 + 3 / 5) / 3
# q5: x1..x11 (score 99..89) then e1 (score 50) at rank 12; e2 never retrieved
Q5_AP = (1 / 12) / 2
Q5_R100 = 1 / 2


@pytest.fixture()
def run(tmp_path: Path) -> dict[str, list[str]]:
    path = tmp_path / "run.trec"
    path.write_text(RUN_TEXT)
    return read_run(path)


def test_run_order_follows_score_then_rank_column(run: dict[str, list[str]]) -> None:
    assert run["q1"] == ["d3", "d1", "d2", "d7", "d4"]
    assert run["q5"][-1] == "e1" and len(run["q5"]) == 12


def test_per_query_values_match_hand_computation(run: dict[str, list[str]]) -> None:
    result = evaluate(QRELS, run)
    q1 = result.per_query["q1"]
    assert q1["nDCG@10"] == pytest.approx(Q1_NDCG, abs=1e-4)
    assert q1["MRR@10"] == pytest.approx(Q1_RR)
    assert q1["MAP@100"] == pytest.approx(Q1_AP, abs=1e-4)
    assert q1["Recall@10"] == pytest.approx(1.0)
    assert q1["Recall@100"] == pytest.approx(1.0)
    q5 = result.per_query["q5"]
    assert q5["Recall@10"] == 0.0 and q5["MRR@10"] == 0.0 and q5["nDCG@10"] == 0.0
    assert q5["Recall@100"] == pytest.approx(Q5_R100)
    assert q5["MAP@100"] == pytest.approx(Q5_AP, abs=1e-4)


def test_no_relevant_and_unanswered_queries_count_as_zero(run: dict[str, list[str]]) -> None:
    result = evaluate(QRELS, run)
    assert set(result.per_query) == {"q1", "q2", "q3", "q5"}  # q4 (no qrels) is ignored
    assert result.per_query["q2"] == dict.fromkeys(result.mean, 0.0)
    assert result.per_query["q3"] == dict.fromkeys(result.mean, 0.0)
    assert (result.queries, result.without_relevant, result.not_retrieved) == (4, 1, 1)


def test_means_are_over_every_judged_query(run: dict[str, list[str]]) -> None:
    mean = evaluate(QRELS, run).mean
    assert mean["nDCG@10"] == pytest.approx(Q1_NDCG / 4, abs=1e-4)
    assert mean["MRR@10"] == pytest.approx(Q1_RR / 4)
    assert mean["MAP@100"] == pytest.approx((Q1_AP + Q5_AP) / 4, abs=1e-4)
    assert mean["Recall@10"] == pytest.approx(1 / 4)
    assert mean["Recall@100"] == pytest.approx((1 + Q5_R100) / 4)


def test_ties_never_reach_the_library_so_every_measure_sees_one_order() -> None:
    # Listing d2 before d1 (same docs, swapped) must change nDCG and RR consistently.
    swapped = evaluate({"q": {"a": 0, "b": 1}}, {"q": ["a", "b"]})
    straight = evaluate({"q": {"a": 0, "b": 1}}, {"q": ["b", "a"]})
    assert swapped.per_query["q"]["MRR@10"] == pytest.approx(0.5)
    assert swapped.per_query["q"]["nDCG@10"] == pytest.approx(1 / log2(3), abs=1e-4)
    assert straight.per_query["q"]["MRR@10"] == straight.per_query["q"]["nDCG@10"] == pytest.approx(1.0)


def test_duplicate_documents_count_once_at_their_best_rank() -> None:
    result = evaluate({"q": {"a": 1, "b": 1}}, {"q": ["a", "a", "b"]})
    assert result.per_query["q"]["MAP@100"] == pytest.approx(1.0)


def test_empty_qrels_is_an_error() -> None:
    with pytest.raises(InvalidInput, match="qrels are empty"):
        evaluate({}, {"q": ["a"]})
