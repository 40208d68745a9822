"""IR metrics through ``ir-measures`` (trec_eval via pytrec_eval, and the MS MARCO RR@10 code).

The numbers come from the library; this module only fixes three conventions that otherwise
differ between tools, so that every measure sees the same ranking and the same query set:

* **Ties.** trec_eval re-sorts a run by score and breaks ties by document id (descending),
  while the MS MARCO RR@10 implementation that ir-measures uses keeps another order. A run is
  therefore handed over as a *ranked list*: its order is the ranking, and the library gets
  strictly decreasing pseudo-scores, so no measure ever sees a tie. Whoever builds the list
  decides ties: crossrank's stages sort stably (a tie keeps the first-stage order) and
  :func:`crossrank.evaluate.trec.read_run` orders a run file by score, then by its rank
  column, then by document id.
* **Relevance.** A grade >= 1 is relevant (trec_eval's default); nDCG uses the grade itself
  as gain (trec_eval's linear gain, as the BEIR paper reports); 0 and negative grades are
  non-relevant.
* **Which queries count.** Every query that appears in the qrels counts, and the mean is
  over all of them (the BEIR convention). A query whose judgements are all non-relevant,
  or a query the system returned nothing for, scores 0 on every measure (trec_eval gives
  0 when there is nothing to find). Queries in the run but absent from the qrels are ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crossrank.errors import InvalidInput
from crossrank.extras import require

log = logging.getLogger(__name__)

#: qrels: query id -> document id -> relevance grade
Qrels = Mapping[str, Mapping[str, int]]
#: run: query id -> document ids, best first (the order *is* the ranking)
RankedRun = Mapping[str, Sequence[str]]

#: crossrank's report names, in report order, with the ir-measures name of each
MEASURES: dict[str, str] = {
    "nDCG@10": "nDCG@10",
    "MRR@10": "RR@10",
    "MAP@100": "AP@100",
    "Recall@10": "R@10",
    "Recall@100": "R@100",
}


@dataclass(frozen=True)
class Evaluation:
    """Per-query and mean values of each measure in :data:`MEASURES`."""

    mean: dict[str, float]  #: measure -> mean over :attr:`queries`
    per_query: dict[str, dict[str, float]]  #: query id -> measure -> value
    queries: int  #: queries that count (every query in the qrels)
    without_relevant: int  #: of those, queries with no relevant judgement (score 0)
    not_retrieved: int  #: of those, queries the run has no documents for (score 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": dict(self.mean),
            "queries": self.queries,
            "queries_without_relevant": self.without_relevant,
            "queries_not_retrieved": self.not_retrieved,
        }


def _ir_measures() -> Any:
    return require("ir_measures", "eval", "computing IR metrics")


def evaluate(qrels: Qrels, run: RankedRun, measures: Mapping[str, str] = MEASURES) -> Evaluation:
    """Score a ranked run against qrels (see the module docstring for the conventions).

    >>> qrels = {"q1": {"d1": 2, "d2": 1}}
    >>> evaluate(qrels, {"q1": ["d2", "d1"]}).mean["MRR@10"]
    1.0
    """
    if not qrels:
        raise InvalidInput("the qrels are empty: there is nothing to evaluate against")
    irm = _ir_measures()
    parsed = {name: irm.parse_measure(spec) for name, spec in measures.items()}
    by_measure = {measure: name for name, measure in parsed.items()}

    judged = [
        irm.Qrel(str(qid), str(doc), int(grade)) for qid, docs in qrels.items() for doc, grade in docs.items()
    ]
    scored = []
    for qid, ranking in run.items():
        if qid not in qrels:
            continue
        seen: set[str] = set()
        position = 0
        for doc in ranking:
            if doc in seen:  # a document counts once, at its best rank
                continue
            seen.add(doc)
            position += 1
            # strictly decreasing: every tool reads the same order, whatever its tie rule
            scored.append(irm.ScoredDoc(str(qid), str(doc), float(-position)))

    per_query: dict[str, dict[str, float]] = {qid: {name: 0.0 for name in measures} for qid in qrels}
    if scored:
        for metric in irm.iter_calc(list(parsed.values()), judged, scored):
            if metric.query_id in per_query:
                per_query[metric.query_id][by_measure[metric.measure]] = float(metric.value)

    count = len(per_query)
    mean = {name: sum(values[name] for values in per_query.values()) / count for name in measures}
    without_relevant = sum(1 for docs in qrels.values() if not any(g >= 1 for g in docs.values()))
    not_retrieved = sum(1 for qid in qrels if not run.get(qid))
    if without_relevant:
        log.info("%d of %d queries have no relevant document and score 0", without_relevant, count)
    return Evaluation(mean, per_query, count, without_relevant, not_retrieved)
