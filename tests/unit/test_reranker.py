"""Invariants of the Reranker API: order, batching, ranking, inputs, long documents, threads."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossrank import InvalidInput, Ranked, Reranker

QUERY = "waterproof shoes for rain"
DOCS = [
    "Crocs Jibbitz 5-Pack Alien Shoe Charms",
    "Crocs Specialist Vent Work",
    "Crocs Kids' Baya Clog",
    "rubber boots",
    "a very long description of a waterproof walking shoe with a thick sole and laces " * 3,
    "",
    "lemon cake",
    "trail running shoes with a breathable mesh upper",
    "umbrella",
]


def test_batched_scores_equal_one_at_a_time(bert_reranker: Reranker) -> None:
    batched = bert_reranker.score(QUERY, DOCS)
    single = np.array([bert_reranker.score(QUERY, [d])[0] for d in DOCS])
    assert np.abs(batched - single).max() < 1e-5


def test_scores_do_not_depend_on_input_order(bert_reranker: Reranker) -> None:
    base = bert_reranker.score(QUERY, DOCS)
    order = list(range(len(DOCS)))
    random.Random(7).shuffle(order)
    shuffled = bert_reranker.score(QUERY, [DOCS[i] for i in order])
    assert np.abs(shuffled - base[order]).max() < 1e-5


def test_rank_equals_sorting_the_scores(bert_reranker: Reranker) -> None:
    scores = bert_reranker.score(QUERY, DOCS)
    ranking = bert_reranker.rank(QUERY, DOCS)
    assert [r.index for r in ranking] == sorted(range(len(DOCS)), key=lambda i: -scores[i])
    assert all(isinstance(r, Ranked) and r.document == DOCS[r.index] for r in ranking)
    assert [r.index for r in bert_reranker.rank(QUERY, DOCS, top_k=3)] == [r.index for r in ranking[:3]]


def test_rank_is_stable_on_ties(bert_reranker: Reranker) -> None:
    ranking = bert_reranker.rank(QUERY, ["same", "other", "same", "same"])
    same = [r.index for r in ranking if r.document == "same"]
    assert same == [0, 2, 3]


def test_score_pairs_matches_score(bert_reranker: Reranker) -> None:
    pairs = [(QUERY, d) for d in DOCS] + [("another query", d) for d in DOCS[:3]]
    scores = bert_reranker.score_pairs(pairs)
    assert np.abs(scores[: len(DOCS)] - bert_reranker.score(QUERY, DOCS)).max() < 1e-5
    assert np.abs(scores[len(DOCS):] - bert_reranker.score("another query", DOCS[:3])).max() < 1e-5


def test_empty_list_and_empty_strings(bert_reranker: Reranker) -> None:
    assert bert_reranker.score(QUERY, []).shape == (0,)
    assert bert_reranker.rank(QUERY, []) == []
    scores = bert_reranker.score(QUERY, ["", "boots"])
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))


@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["ok", None], ["ok", 5]])
def test_invalid_documents_raise_invalid_input(bert_reranker: Reranker, bad: object) -> None:
    with pytest.raises(InvalidInput):
        bert_reranker.score(QUERY, bad)  # type: ignore[arg-type]


def test_invalid_query_and_pairs_raise_invalid_input(bert_reranker: Reranker) -> None:
    with pytest.raises(InvalidInput, match="query"):
        bert_reranker.score(None, ["doc"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="single"):
        bert_reranker.score(QUERY, "a string is not a list")
    with pytest.raises(InvalidInput):
        bert_reranker.score_pairs([("only one",)])  # type: ignore[list-item]


def test_text_that_is_not_unicode_is_refused_with_its_place(bert_reranker: Reranker) -> None:
    half_emoji = "\ud83d"  # the first half of the UTF-16 pair for U+1F40A, as a cut JSON string gives
    with pytest.raises(InvalidInput, match=r"documents\[1\] contains an unpaired UTF-16 surrogate \(U\+D83D at character 5"):
        bert_reranker.score(QUERY, ["boots", "clog " + half_emoji])
    with pytest.raises(InvalidInput, match=r"pairs\[0\] query"):
        bert_reranker.score_pairs([(half_emoji, "boots")])
    assert bert_reranker.score(QUERY, ["clog \U0001f40a"]).shape == (1,)  # a whole emoji is text


def test_raw_and_sigmoid_activation_agree(bert_reranker: Reranker) -> None:
    raw = bert_reranker.score(QUERY, DOCS, activation="none")
    assert np.allclose(1 / (1 + np.exp(-raw)), bert_reranker.score(QUERY, DOCS))


def test_truncated_pairs_are_counted(bert_dir: Path, model_cache: Path) -> None:
    reranker = Reranker(bert_dir, cache_dir=model_cache, max_length=16)
    details = reranker.score_details([(QUERY, "word " * 50), (QUERY, "short"), (QUERY, "word " * 40)])
    assert details.truncated.tolist() == [True, False, True]
    assert details.truncated_count == 2 and reranker.truncated_pairs == 2
    reranker.score(QUERY, ["word " * 50])
    assert reranker.truncated_pairs == 3


def test_window_mode_finds_relevant_text_past_the_limit(bert_dir: Path, model_cache: Path) -> None:
    """A document whose relevant passage lies past max_length: windows see it, truncation cannot."""
    reranker = Reranker(bert_dir, cache_dir=model_cache, max_length=32, window_stride=8)
    probe = "waterproof rain shoes"
    # Choose the passage that the model scores highest for the query among candidates, and
    # a filler that scores low, so the construction does not rely on a trained model.
    candidates = ["waterproof rain shoes", "rain boots for wet weather", "shoes that keep feet dry",
                  "lemon cake recipe", "stock market report", "the history of rome"]
    scores = reranker.score(probe, candidates)
    relevant, filler = candidates[int(np.argmax(scores))], candidates[int(np.argmin(scores))]
    document = " ".join([filler] * 12 + [relevant])
    truncated = reranker.score(probe, [document])[0]
    windowed = reranker.score(probe, [document], long_documents="window")[0]
    assert windowed > truncated
    only_relevant = reranker.score(probe, [relevant])[0]
    assert windowed >= min(only_relevant, truncated)  # a window around the passage scores like it


def test_window_mode_equals_truncation_for_short_documents(bert_reranker: Reranker) -> None:
    short = DOCS[:4]
    assert np.abs(bert_reranker.score(QUERY, short, long_documents="window") - bert_reranker.score(QUERY, short)).max() < 1e-6


def test_concurrent_use_from_threads_gives_correct_results(bert_reranker: Reranker) -> None:
    queries = [f"{QUERY} {i}" for i in range(8)]
    expected = {q: bert_reranker.score(q, DOCS) for q in queries}
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda q: (q, bert_reranker.score(q, DOCS)), queries * 4))
    for q, scores in results:
        assert np.abs(scores - expected[q]).max() < 1e-5


def test_invalid_options(bert_dir: Path, model_cache: Path) -> None:
    with pytest.raises(InvalidInput):
        Reranker(bert_dir, cache_dir=model_cache, activation="softmax")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        Reranker(bert_dir, cache_dir=model_cache, long_documents="split")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        Reranker(bert_dir, cache_dir=model_cache, batch_size=0)
    for threads in (0, -1, 1.5, True):
        with pytest.raises(InvalidInput, match="threads must be a whole number >= 1"):
            Reranker(bert_dir, cache_dir=model_cache, threads=threads)  # type: ignore[arg-type]


@pytest.mark.parametrize(("options", "name"), [
    ({"max_windows": 0}, "max_windows"), ({"max_windows": -1}, "max_windows"), ({"max_windows": 1.5}, "max_windows"),
    ({"max_windows": True}, "max_windows"), ({"long_documents": "split"}, "long_documents"),
    ({"max_tokens": 0}, "max_tokens"), ({"activation": "softmax"}, "activation"),
])
def test_bad_call_options_raise_invalid_input_naming_them(
    bert_reranker: Reranker, options: dict[str, Any], name: str
) -> None:
    """max_windows=0 once returned 0.0, -1 dropped a window, a bogus long_documents was ignored."""
    with pytest.raises(InvalidInput, match=name):
        bert_reranker.score(QUERY, DOCS[:2], **{"long_documents": "window", **options})
    if "activation" not in options:  # the seam the server's scheduler calls checks them too
        with pytest.raises(InvalidInput, match=name):
            bert_reranker.tokenize([(QUERY, DOCS[0])], **{"long_documents": "window", **options})


@pytest.mark.parametrize("top_k", [-1, 1.5, "3", True])
def test_a_bad_top_k_raises_invalid_input(bert_reranker: Reranker, top_k: object) -> None:
    with pytest.raises(InvalidInput, match="top_k"):
        bert_reranker.rank(QUERY, DOCS, top_k=top_k)  # type: ignore[arg-type]


@pytest.mark.parametrize("stride", ["8", -1, 1.5, 512, 300])
def test_a_bad_window_stride_raises_invalid_input(bert_dir: Path, model_cache: Path, stride: object) -> None:
    with pytest.raises(InvalidInput, match="window_stride"):
        Reranker(bert_dir, cache_dir=model_cache, window_stride=stride)  # type: ignore[arg-type]


def test_max_length_above_the_models_limit_is_capped_with_a_warning(
    bert_dir: Path, model_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="crossrank"):
        reranker = Reranker(bert_dir, cache_dir=model_cache, max_length=100_000)
    assert reranker.max_length == 512
    assert any("100000" in r.getMessage() and "512" in r.getMessage() for r in caplog.records), caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="crossrank"):
        Reranker(bert_dir, cache_dir=model_cache, max_length=128)
    assert not caplog.records
    with pytest.raises(InvalidInput, match="max_length"):
        Reranker(bert_dir, cache_dir=model_cache, max_length="128")  # type: ignore[arg-type]


def test_a_query_cut_to_fit_is_reported_as_truncated(bert_dir: Path, model_cache: Path) -> None:
    """A query longer than half the budget is cut; two queries that differ only past the cut
    then score alike, so the cut is flagged as a cut document is."""
    reranker = Reranker(bert_dir, cache_dir=model_cache, max_length=32)
    head = "where can i buy waterproof crocs clogs for kids in the rain " * 2
    details = reranker.score_details([(head + "red", "boots"), (head + "blue", "boots"), ("crocs", "boots")])
    assert details.truncated.tolist() == [True, True, False]
    assert details.values[0] == details.values[1]
