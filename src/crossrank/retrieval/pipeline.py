"""Retrieve, then rerank: the two-stage search.

>>> pipeline = Pipeline(Index.open("products.idx").retriever("hybrid"), Reranker(MODEL))  # doctest: +SKIP
>>> [hit.id for hit in pipeline.search("crocs for kids", candidates=100, top_k=5).hits]  # doctest: +SKIP
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np

from crossrank.errors import InvalidInput
from crossrank.rerank import Reranker
from crossrank.retrieval.base import Candidate, Hit, Retriever, SearchResult
from crossrank.retrieval.index import Index
from crossrank.scores import ranked_order
from crossrank.texts import check_text


def _positive(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidInput(f"{what} must be a positive integer")
    return value


class Pipeline:
    """A first stage (any :class:`Retriever`, or an :class:`Index`) and an optional cross-encoder.

    ``search`` fetches ``candidates`` documents, scores each (query, document) pair with the
    reranker and returns the best ``top_k``. More candidates raise recall at a cost linear
    in the reranker's work. Without a reranker the first-stage order is kept.

    >>> import tempfile
    >>> from crossrank.models.synthetic import build_random_model
    >>> from crossrank.retrieval import Record, build_index
    >>> work = tempfile.mkdtemp()
    >>> docs = [Record("a", "leather boots"), Record("b", "crocs clog for kids"), Record("c", "a kids sandal")]
    >>> index = Index.open(build_index(f"{work}/shoes.idx", docs).path)
    >>> model = build_random_model(f"{work}/tiny-ce", layers=1)
    >>> reranker = Reranker(model, cache_dir=f"{tempfile.gettempdir()}/crossrank-examples")
    >>> result = Pipeline(index, reranker).search("crocs for kids", candidates=10, top_k=2)
    >>> len(result.hits), {hit.id for hit in result.hits} <= {"b", "c"}
    (2, True)
    """

    def __init__(self, retriever: Retriever | Index, reranker: Reranker | None = None) -> None:
        if isinstance(retriever, Index):  # an index alone: hybrid when it has vectors, else BM25
            retriever = retriever.retriever("hybrid" if retriever.dense is not None else "bm25")
        self.retriever: Retriever = retriever
        self.reranker = reranker

    def search(self, query: str, candidates: int = 100, top_k: int = 10, *,
               filter: dict[str, Any] | None = None) -> SearchResult:
        """``filter`` (stored fields of the embedded index, see :mod:`crossrank.retrieval.filters`)
        is applied inside the first stage, so ``candidates`` matching documents are reranked."""
        run = SearchRun(query, candidates, top_k)
        found = run.retrieved(retrieve(self.retriever, run.query, candidates, filter))
        scores = self.reranker.score(run.query, run.texts) if self.reranker is not None and found else None
        return run.result(scores, retriever=self.retriever.name,
                          reranker=self.reranker.name if self.reranker is not None else None)


class SearchRun:
    """One retrieve → rerank search, step by step: check the arguments, take the first stage's
    candidates, then the reranker's scores of :attr:`texts` (or none) and give the result.

    The caller makes the two calls in between, so the same steps serve :meth:`Pipeline.search`
    (which calls its :class:`Reranker` directly) and the server's ``POST /search`` (which retrieves
    in a worker thread and awaits its batching scheduler).
    """

    def __init__(self, query: str, candidates: int, top_k: int) -> None:
        self.query = check_text(query, "query")
        self.candidates = _positive(candidates, "candidates")
        self.top_k = _positive(top_k, "top_k")
        self.found: list[Candidate] = []
        self.timings_ms: dict[str, float] = {}
        self._started = self._retrieved = time.perf_counter()

    def retrieved(self, found: list[Candidate]) -> list[Candidate]:
        """Record the first stage's candidates (and its time); returns them."""
        self.found = found
        self._retrieved = time.perf_counter()
        self.timings_ms["retrieve"] = (self._retrieved - self._started) * 1000.0
        return found

    @property
    def texts(self) -> list[str]:
        """The candidates' texts, in first-stage order: what the reranker scores."""
        return [c.text for c in self.found]

    def result(self, scores: np.ndarray | None, *, retriever: str, reranker: str | None) -> SearchResult:
        """The best ``top_k`` candidates by ``scores`` (one per candidate; ties keep the
        first-stage order), or in first-stage order when ``scores`` is None (no reranking)."""
        if scores is None:
            hits = first_stage_hits(self.found, self.top_k)
        else:
            hits = hits_from_scores(self.found, scores, self.top_k)
            self.timings_ms["rerank"] = (time.perf_counter() - self._retrieved) * 1000.0
        self.timings_ms["total"] = (time.perf_counter() - self._started) * 1000.0
        return SearchResult(query=self.query, hits=hits, retriever=retriever, reranker=reranker,
                            candidates=len(self.found), timings_ms=dict(self.timings_ms))


def retrieve(retriever: Retriever, query: str, k: int, filter: dict[str, Any] | None) -> list[Candidate]:
    """``retriever.retrieve``, passing ``filter`` to the retrievers that take one (the embedded index's)."""
    if filter is None:
        return retriever.retrieve(query, k)
    if not getattr(retriever, "filters", False):
        raise InvalidInput(f"the {retriever.name} retriever does not take filters; filters work on the "
                           "stored fields of crossrank's own index")
    found: list[Candidate] = retriever.retrieve(query, k, filter=filter)  # type: ignore[call-arg]
    return found


def rerank_candidates(reranker: Reranker, query: str, found: list[Candidate], top_k: int) -> list[Hit]:
    """Score candidates with the cross-encoder; best first (ties keep first-stage order)."""
    return hits_from_scores(found, reranker.score(query, [c.text for c in found]), top_k)


def hits_from_scores(found: list[Candidate], scores: np.ndarray, top_k: int) -> list[Hit]:
    """The ``top_k`` candidates by rerank score (ties keep first-stage order) as hits."""
    return [_hit(found[i], rank, float(scores[i])) for rank, i in enumerate(ranked_order(scores, top_k), start=1)]


def first_stage_hits(found: list[Candidate], top_k: int) -> list[Hit]:
    """The first ``top_k`` candidates as hits, without rerank scores."""
    return [_hit(c, rank, None) for rank, c in enumerate(found[:top_k], start=1)]


def _hit(candidate: Candidate, rank: int, rerank_score: float | None) -> Hit:
    return Hit(
        id=candidate.id,
        text=candidate.text,
        rank=rank,
        first_stage_rank=candidate.rank,
        first_stage_score=candidate.score,
        rerank_score=rerank_score,
        fields=candidate.fields,
    )


_BLANK_LINES = re.compile(r"\n\s*\n")


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs separated by blank lines; a text without blank lines gives one per line."""
    parts = [p.strip() for p in _BLANK_LINES.split(text.replace("\r\n", "\n"))]
    parts = [p for p in parts if p]
    if len(parts) <= 1:
        parts = [line.strip() for line in text.splitlines() if line.strip()]
    return parts


def search_paragraphs(reranker: Reranker, text: str, query: str, top_k: int = 10) -> SearchResult:
    """The small-collection mode: score every paragraph of one document, no first stage.

    Each paragraph's id is its 1-based position, which is also its "first-stage" rank.
    """
    query = check_text(query, "query")
    _positive(top_k, "top_k")
    started = time.perf_counter()
    paragraphs = split_paragraphs(text)
    found = [Candidate(str(i), p, 0.0, i) for i, p in enumerate(paragraphs, start=1)]
    hits = rerank_candidates(reranker, query, found, top_k) if found else []
    elapsed = (time.perf_counter() - started) * 1000.0
    return SearchResult(
        query=query,
        hits=hits,
        retriever="paragraphs",
        reranker=reranker.name,
        candidates=len(found),
        timings_ms={"retrieve": 0.0, "rerank": elapsed, "total": elapsed},
    )
