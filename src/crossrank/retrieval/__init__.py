"""Retrieve & re-rank: the embedded index, external engines, and the two-stage pipeline.

Every first stage implements :class:`Retriever` (``retrieve(query, k) -> list[Candidate]``);
:class:`Pipeline` puts a cross-encoder behind any of them.
"""

from crossrank.errors import BadIndex, CorpusChanged, IndexCorrupt, IndexUnusable
from crossrank.retrieval.base import RETRIEVER_KINDS, Candidate, Hit, Retriever, SearchResult
from crossrank.retrieval.build import BuildReport, build_index
from crossrank.retrieval.fusion import reciprocal_rank_fusion
from crossrank.retrieval.index import Index
from crossrank.retrieval.pipeline import Pipeline, search_paragraphs, split_paragraphs
from crossrank.retrieval.records import ReadStats, Record, read_records

__all__ = [
    "RETRIEVER_KINDS",
    "BadIndex",
    "BuildReport",
    "Candidate",
    "CorpusChanged",
    "Hit",
    "Index",
    "IndexCorrupt",
    "IndexUnusable",
    "Pipeline",
    "ReadStats",
    "Record",
    "Retriever",
    "SearchResult",
    "build_index",
    "read_records",
    "reciprocal_rank_fusion",
    "search_paragraphs",
    "split_paragraphs",
]
