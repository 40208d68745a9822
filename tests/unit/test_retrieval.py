"""First stages of the embedded index against independent references (BM25 formula, brute-force cosine, RRF)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from crossrank import Encoder
from crossrank.errors import InvalidInput
from crossrank.retrieval import Candidate, Index, Record, Retriever, build_index, reciprocal_rank_fusion

DOCS = [
    "red clog for kids",
    "blue leather boot",
    "boot boot boot with laces",
    "kids sandal summer beach",
    "garden clog waterproof green",
    "running shoe lightweight mesh",
    "winter boot warm lining fur",
    "beach towel striped cotton",
    "wool sock warm",
    "sandal leather brown strap",
]


@pytest.fixture(scope="module")
def dense_index(tmp_path_factory: pytest.TempPathFactory, minilm_encoder: Encoder) -> Path:
    path = tmp_path_factory.mktemp("retrieval") / "idx"
    build_index(path, [Record(f"doc{i}", t) for i, t in enumerate(DOCS)], encoder=minilm_encoder, batch_size=3)
    return path


def _bm25_reference(query: str, k1: float = 1.2, b: float = 0.75) -> dict[str, float]:
    """Textbook BM25 (Lucene's idf) over whitespace tokens; these words stem to themselves."""
    tokenized = [d.split() for d in DOCS]
    avgdl = sum(map(len, tokenized)) / len(tokenized)
    scores: dict[str, float] = {}
    for i, tokens in enumerate(tokenized):
        tf = Counter(tokens)
        total = 0.0
        for term in query.split():
            n = sum(term in t for t in tokenized)
            if not tf[term]:
                continue
            idf = math.log(1 + (len(DOCS) - n + 0.5) / (n + 0.5))
            total += idf * tf[term] * (k1 + 1) / (tf[term] + k1 * (1 - b + b * len(tokens) / avgdl))
        if total:
            scores[f"doc{i}"] = total
    return scores


@pytest.mark.parametrize("query", ["boot", "warm boot", "clog kids", "sandal leather strap"])
def test_bm25_matches_reference_formula(dense_index: Path, query: str) -> None:
    got = Index.open(dense_index).retriever("bm25").retrieve(query, 10)
    expected = _bm25_reference(query)
    assert {c.id for c in got} == set(expected)
    for candidate in got:
        assert candidate.score == pytest.approx(expected[candidate.id], rel=1e-4)
    assert [c.rank for c in got] == list(range(1, len(got) + 1))
    assert all(a.score >= b.score for a, b in zip(got, got[1:]))
    assert all(c.text == DOCS[int(c.id[3:])] for c in got)


def test_bm25_query_syntax_is_plain_words(dense_index: Path) -> None:
    retriever = Index.open(dense_index).retriever("bm25")
    assert [c.id for c in retriever.retrieve('BOOT AND "laces" (OR', 1)] == ["doc2"]
    assert retriever.retrieve("?!*", 5) == []


def test_dense_matches_brute_force_cosine(dense_index: Path, minilm_encoder: Encoder) -> None:
    retriever = Index.open(dense_index).retriever("dense")  # encoder loaded from the manifest
    vectors = minilm_encoder.embed(DOCS)
    for query in ("footwear for children", "something warm for winter", "towel"):
        sims = vectors @ minilm_encoder.embed_query(query)
        order = np.argsort(-sims)[:4]
        got = retriever.retrieve(query, 4)
        assert [c.id for c in got] == [f"doc{i}" for i in order]
        np.testing.assert_allclose([c.score for c in got], sims[order], atol=1e-4)


def test_hybrid_is_rrf_of_bm25_and_dense(dense_index: Path, minilm_encoder: Encoder) -> None:
    index = Index.open(dense_index)
    query, k, rrf_k = "warm boot for kids", 5, 10
    lexical = index.retriever("bm25").retrieve(query, k)
    dense = index.retriever("dense", encoder=minilm_encoder).retrieve(query, k)
    fused: dict[str, float] = {}
    for ranking in (lexical, dense):
        for position, c in enumerate(ranking, start=1):
            fused[c.id] = fused.get(c.id, 0.0) + 1 / (rrf_k + position)
    got = index.retriever("hybrid", encoder=minilm_encoder, rrf_k=rrf_k).retrieve(query, k)
    assert len(got) == k
    assert [c.score for c in got] == pytest.approx(sorted(fused.values(), reverse=True)[:k])
    for c in got:
        assert c.score == pytest.approx(fused[c.id])


def test_rrf_hand_example() -> None:
    a = [Candidate("x", "X", 9.0, 1), Candidate("y", "Y", 5.0, 2)]
    b = [Candidate("y", "Y", 0.9, 1), Candidate("z", "Z", 0.1, 2)]
    fused = reciprocal_rank_fusion([a, b], 3, rrf_k=1)
    assert [c.id for c in fused] == ["y", "x", "z"]  # y: 1/3 + 1/2; x: 1/2; z: 1/3
    assert [c.score for c in fused] == pytest.approx([1 / 3 + 1 / 2, 1 / 2, 1 / 3])
    assert [c.rank for c in fused] == [1, 2, 3]
    assert reciprocal_rank_fusion([a, b], 1, rrf_k=1)[0].id == "y"


def test_retrievers_implement_the_protocol_and_check_k(dense_index: Path) -> None:
    index = Index.open(dense_index)
    for kind in ("bm25", "dense", "hybrid"):
        retriever = index.retriever(kind)
        assert isinstance(retriever, Retriever) and retriever.name == kind
        with pytest.raises(InvalidInput):
            retriever.retrieve("boot", 0)
    with pytest.raises(InvalidInput, match="retriever must be one of"):
        index.retriever("sparse")
    assert len(index.retriever("dense").retrieve("boot", 50)) == len(DOCS)  # k larger than the index


SPLIT_WORDS = ["mod_autohost apache module", "self_test runner for crates", "compiler_builtins intrinsics",
               "foo-bar:baz version 2.0", "plain words and more"]


@pytest.fixture(scope="module")
def words_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("words") / "idx"
    build_index(path, [Record(f"w{i}", t) for i, t in enumerate(SPLIT_WORDS)])
    return path


@pytest.mark.parametrize("query, expected", [
    ("mod_autohost", "w0"), ("self_test", "w1"), ("compiler_builtins", "w2"),  # the tokenizer splits them
    ("foo-bar:baz", "w3"), ("version:2.0", "w3"),
])
def test_bm25_words_the_tokenizer_splits_are_words_not_phrases(words_index: Path, query: str, expected: str) -> None:
    # a phrase query on a field indexed without positions used to raise ValueError
    assert Index.open(words_index).retriever("bm25").retrieve(query, 3)[0].id == expected


@pytest.mark.parametrize("query", [
    'a:b "c" (AND) -x * ? ^2 ~ [1 TO 5] {x}', "AND", "OR NOT", '"unclosed', "text:clog", "*", "+-!", "\\",
    "field:[* TO *]", "a~2", "/regex/", "IN [a b]", "x^", "'", "\x00", "e\u0301 \U0001f600", "_" * 300,
])
def test_bm25_query_syntax_characters_are_plain_text(words_index: Path, query: str) -> None:
    got = Index.open(words_index).retriever("bm25").retrieve(query, 3)
    assert isinstance(got, list)


def test_bm25_query_terms_are_the_index_analyzer_s(words_index: Path) -> None:
    assert Index.open(words_index).query_terms("Running self_test AND Ärger") == ["run", "self", "test", "and", "ärger"]


def test_large_k_dense_search_leaves_the_shared_setting_alone(dense_index: Path) -> None:
    index = Index.open(dense_index)
    retriever = index.retriever("dense")
    before = index.vectors().expansion_search
    small = [c.id for c in retriever.retrieve("warm boot", 3)]
    assert len(retriever.retrieve("warm boot", 10_000)) == len(DOCS)  # usearch widens the search to k itself
    assert index.vectors().expansion_search == before
    assert [c.id for c in retriever.retrieve("warm boot", 3)] == small
