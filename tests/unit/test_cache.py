"""The LRU score cache, alone and inside Reranker."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossrank import Reranker
from crossrank.bench.inputs import make_workload
from crossrank.cache import ScoreCache, document_hash
from crossrank.errors import InvalidInput


def test_lru_evicts_the_least_recently_used_and_counts() -> None:
    cache = ScoreCache(max_entries=2)
    a, b, c = (cache.key("m", "q", d) for d in ("a", "b", "c"))
    cache.put(a, 1.0, False)
    cache.put(b, 2.0, True)
    assert cache.get(a) == (1.0, False)  # a is now the most recent
    cache.put(c, 3.0, False)  # evicts b
    assert cache.get(b) is None
    assert cache.get(c) == (3.0, False) and len(cache) == 2
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["evictions"], stats["entries"]) == (2, 1, 1, 2)
    assert stats["hit_rate"] == pytest.approx(2 / 3)
    with pytest.raises(InvalidInput):
        ScoreCache(0)


def test_keys_separate_models_queries_and_documents() -> None:
    cache = ScoreCache()
    assert cache.key("m1", "q", "d") != cache.key("m2", "q", "d")
    assert cache.key("m", "q1", "d") != cache.key("m", "q2", "d")
    assert document_hash("d") != document_hash("d ") and len(document_hash("x" * 10_000)) == 32


class _CountingRuntime:
    """Delegates to the real runtime and counts the rows it is asked to score."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name: str = getattr(inner, "name", type(inner).__name__)
        self.providers: list[str] = inner.providers
        self.path: Path = inner.path
        self.input_names: list[str] = list(inner.input_names)
        self.output: str = inner.output
        self.output_shape: list[int | str | None] | None = inner.output_shape
        self.max_batch_tokens: int | None = inner.max_batch_tokens
        self.rows = 0

    def plan(self, lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
        return list(self.inner.plan(lengths, batch_size))

    def run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        self.rows += len(feed["input_ids"])
        return np.asarray(self.inner.run(feed))


def _rows(reranker: Reranker) -> int:
    """Rows the counting runtime of ``reranker`` has scored so far."""
    runtime = reranker.runtime
    assert isinstance(runtime, _CountingRuntime)
    return runtime.rows


@pytest.fixture()
def cached(bert_dir: Path, model_cache: Path) -> Reranker:
    reranker = Reranker(bert_dir, cache_dir=model_cache, batch_size=4, cache=100)
    reranker.runtime = _CountingRuntime(reranker.runtime)
    return reranker


def test_cached_scores_equal_uncached_and_skip_inference(cached: Reranker, bert_reranker: Reranker) -> None:
    work = make_workload("titles", 12, seed=4)
    expected = bert_reranker.score(work.query, work.documents)
    first = cached.score(work.query, work.documents)
    assert _rows(cached) == 12
    second = cached.score(work.query, work.documents[::-1])
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(second, expected[::-1])
    assert _rows(cached) == 12  # nothing new was scored
    assert cached.cache is not None and cached.cache.hits == 12 and cached.cache.misses == 12
    # a page with 4 known and 2 new documents scores only the 2 new ones
    page = work.documents[:4] + ["brand new document one", "brand new document two"]
    np.testing.assert_array_equal(cached.score(work.query, page)[:4], expected[:4])
    assert _rows(cached) == 14


def test_cache_keeps_activation_duplicates_and_truncation(cached: Reranker, bert_reranker: Reranker) -> None:
    query = "leather boots"
    docs = ["warm leather boots", "warm leather boots", "a cotton shirt", "word " * 2000]
    raw = cached.score(query, docs, activation="none")
    assert _rows(cached) == 3  # the duplicate is scored once
    assert raw[0] == raw[1]
    sig = cached.score(query, docs)  # from the cache, other activation
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-raw)))
    np.testing.assert_allclose(sig, bert_reranker.score(query, docs))
    details = cached.score_details([(query, docs[3])])
    assert details.truncated.tolist() == [True]  # the flag survives a cache hit
    assert _rows(cached) == 3
    other_query = cached.score("cotton", docs[:1])
    np.testing.assert_allclose(other_query, bert_reranker.score("cotton", docs[:1]))
    assert _rows(cached) == 4


def test_window_mode_is_cached_apart_from_truncate(cached: Reranker, bert_reranker: Reranker) -> None:
    long_doc = "shoes " * 300 + "the relevant clogs at the very end"
    truncated = cached.score("clogs", [long_doc])
    windowed = cached.score("clogs", [long_doc], long_documents="window")
    np.testing.assert_allclose(windowed, bert_reranker.score("clogs", [long_doc], long_documents="window"))
    np.testing.assert_allclose(truncated, bert_reranker.score("clogs", [long_doc]))
    assert cached.cache is not None and cached.cache.hits == 0  # two different keys


def test_shared_cache_does_not_mix_models(bert_dir: Path, xlmr_dir: Path, model_cache: Path) -> None:
    shared = ScoreCache(1000)
    bert = Reranker(bert_dir, cache_dir=model_cache, cache=shared)
    xlmr = Reranker(xlmr_dir, cache_dir=model_cache, cache=shared)
    a = bert.score("q", ["one document"])
    b = xlmr.score("q", ["one document"])
    assert shared.hits == 0 and len(shared) == 2 and a[0] != b[0]
    with pytest.raises(InvalidInput):
        Reranker(bert_dir, cache_dir=model_cache, cache="yes")  # type: ignore[arg-type]
