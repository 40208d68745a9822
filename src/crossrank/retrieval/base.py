"""The first-stage interface every retriever implements, and the shapes a search returns.

A retriever turns a query into ranked :class:`Candidate` documents. The embedded index
(BM25, dense, hybrid) and the external engines (Qdrant, PostgreSQL, Elasticsearch) all
implement :class:`Retriever`, so :class:`crossrank.retrieval.Pipeline` and the evaluation
code never need to know which engine answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

RetrieverKind = Literal["bm25", "dense", "hybrid"]
RETRIEVER_KINDS: tuple[str, ...] = ("bm25", "dense", "hybrid")


@dataclass(frozen=True)
class Candidate:
    """One document returned by a first stage."""

    id: str  #: document id
    text: str  #: document text (for reranking and display)
    score: float  #: first-stage score (BM25, cosine, RRF...; higher is better)
    rank: int  #: 1-based first-stage rank
    #: stored fields of the document (``crossrank index --store``): path -> value as indexed
    fields: dict[str, Any] = field(default_factory=dict, hash=False)


@runtime_checkable
class Retriever(Protocol):
    """Anything that returns the top ``k`` candidates of a query, best first."""

    name: str

    def retrieve(self, query: str, k: int) -> list[Candidate]: ...


@dataclass(frozen=True)
class Hit:
    """One result of a :class:`~crossrank.retrieval.Pipeline` search."""

    id: str
    text: str
    rank: int  #: final 1-based rank
    first_stage_rank: int
    first_stage_score: float
    rerank_score: float | None  #: ``None`` when the pipeline has no reranker
    fields: dict[str, Any] = field(default_factory=dict, hash=False)  #: the document's stored fields

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "text": self.text,
            "fields": dict(self.fields),
            "rank": self.rank,
            "first_stage_rank": self.first_stage_rank,
            "first_stage_score": self.first_stage_score,
            "rerank_score": self.rerank_score,
        }


@dataclass(frozen=True)
class SearchResult:
    """The hits of one query and how long each stage took (milliseconds)."""

    query: str
    hits: list[Hit]
    retriever: str
    reranker: str | None
    candidates: int  #: how many candidates the first stage returned
    timings_ms: dict[str, float] = field(default_factory=dict)  #: "retrieve", "rerank", "total"

    def to_dict(self) -> dict[str, object]:
        return {
            "query": self.query,
            "retriever": self.retriever,
            "reranker": self.reranker,
            "candidates": self.candidates,
            "hits": [hit.to_dict() for hit in self.hits],
            "timings_ms": dict(self.timings_ms),
        }
