"""Reciprocal rank fusion (Cormack et al., 2009): ``score(d) = sum over lists of 1 / (k + rank)``."""

from __future__ import annotations

from collections.abc import Sequence

from crossrank.errors import InvalidInput
from crossrank.retrieval.base import Candidate


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Candidate]], k: int, *, rrf_k: int = 60) -> list[Candidate]:
    """Fuse ranked lists into one of at most ``k`` candidates.

    ``rrf_k`` damps the weight of the top ranks: small values trust each list's top hits
    more, large values flatten the contribution of rank. Ties keep first-seen order.
    """
    if rrf_k < 0:
        raise InvalidInput("rrf_k must be >= 0")
    scores: dict[str, float] = {}
    first: dict[str, Candidate] = {}
    for ranking in rankings:
        for candidate in ranking:
            scores[candidate.id] = scores.get(candidate.id, 0.0) + 1.0 / (rrf_k + candidate.rank)
            first.setdefault(candidate.id, candidate)
    order = sorted(scores, key=lambda doc_id: -scores[doc_id])[:k]
    return [Candidate(doc_id, first[doc_id].text, scores[doc_id], rank, first[doc_id].fields)
            for rank, doc_id in enumerate(order, start=1)]
