"""Hard negatives mined from crossrank's own index: the first stage's top N minus the judged positives.

The corpus is indexed with ``crossrank eval``'s builder (reused while the corpus is
unchanged); each training query is searched with the chosen first stage (bm25, dense or
hybrid), its judged positives are removed, and the best remaining candidates become its
negatives, after the negatives the qrels judge (grade 0) themselves. Optionally, candidates
that the base model scores almost as high as the query's weakest positive are dropped as
likely false negatives (unjudged relevant documents), as sentence-transformers'
``mine_hard_negatives`` does with its absolute margin.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from crossrank.errors import InvalidInput
from crossrank.progress import bar
from crossrank.retrieval.base import Retriever
from crossrank.train.data import TrainingData

log = logging.getLogger(__name__)

#: scores (query, texts) -> relevance in 0..1, higher is more relevant
PairScorer = Callable[[str, Sequence[str]], Any]


@dataclass
class Mined:
    """Per training query: its negatives (document id -> text), and what mining did."""

    negatives: dict[str, dict[str, str]] = field(default_factory=dict)
    judged: int = 0  #: negatives that come from grade-0 judgements
    mined: int = 0  #: negatives found by the first stage
    dropped_false_negatives: int = 0
    queries_short: int = 0  #: queries that got fewer negatives than asked

    def summary(self, per_query: int, retriever: str, depth: int, margin: float | None) -> dict[str, object]:
        return {
            "first_stage": retriever, "depth": depth, "negatives_per_query": per_query,
            "judged_negatives": self.judged, "mined_negatives": self.mined,
            "dropped_as_false_negatives": self.dropped_false_negatives, "false_negative_margin": margin,
            "queries_with_fewer_negatives": self.queries_short,
        }


def mine_negatives(
    data: TrainingData,
    retriever: Retriever,
    *,
    per_query: int = 4,
    depth: int = 30,
    scorer: PairScorer | None = None,
    margin: float = 0.1,
    progress: bool = True,
) -> Mined:
    """Up to ``per_query`` negatives for each training query (see the module docstring)."""
    if per_query < 1 or depth < 1:
        raise InvalidInput("negatives per query and mining depth must be positive")
    result = Mined()
    meter = bar(len(data.train), f"mining negatives ({retriever.name} top {depth})", unit=" queries", enabled=progress)
    try:
        for qid, judged in data.train.items():
            query = data.queries[qid]
            chosen = {doc: data.texts[doc] for doc, grade in judged.items() if grade < 1}
            result.judged += len(chosen)
            candidates = [c for c in retriever.retrieve(query, depth) if c.id not in judged and c.id != qid]
            if scorer is not None and candidates:
                positives = [data.texts[d] for d in data.positives(qid)]
                scores = list(scorer(query, positives + [c.text for c in candidates]))
                ceiling = min(scores[: len(positives)]) - margin
                kept = [c for c, s in zip(candidates, scores[len(positives):]) if s <= ceiling]
                result.dropped_false_negatives += len(candidates) - len(kept)
                candidates = kept
            for candidate in candidates:
                if len(chosen) >= per_query:
                    break
                chosen[candidate.id] = candidate.text
                result.mined += 1
            if len(chosen) < per_query:
                result.queries_short += 1
            result.negatives[qid] = chosen
            meter.update(1)
    finally:
        meter.close()
    return result
