"""Run evaluation stages: a first stage (bm25, dense, hybrid), optionally + cross-encoder.

A stage name is a retriever kind, optionally followed by ``+ce``: ``bm25+ce`` reranks the top
``top_n`` BM25 candidates with the cross-encoder. The first stage is queried once per query
and shared by its reranked stage, so ``bm25`` and ``bm25+ce`` see the very same candidates;
the reranked stage's latency is the retrieval time plus the reranking time of that query.

A query that fails (in the first stage or in reranking) is recorded in the stage's
``failures`` with its message, counted as retrieving nothing, and the run goes on: one bad
query never loses the work done for the others.

Reranking goes through :func:`crossrank.retrieval.pipeline.rerank_candidates` (the pipeline's
own code: a stable sort, so ties keep the first-stage order). The reranker is pluggable: any
object with ``name`` and ``score(query, documents) -> scores`` works, e.g. a
:class:`crossrank.Reranker`, or an order-preserving reranker in tests.

As in the BEIR evaluation code, a retrieved document whose id equals the query id is
dropped (it matters for ArguAna and Quora, where queries are also documents).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from crossrank.errors import InvalidInput
from crossrank.progress import bar
from crossrank.retrieval.base import RETRIEVER_KINDS, Candidate, Retriever
from crossrank.retrieval.pipeline import rerank_candidates

log = logging.getLogger(__name__)

RERANK_SUFFIX = "+ce"
ALL_STAGES = tuple(s for kind in RETRIEVER_KINDS for s in (kind, kind + RERANK_SUFFIX))


class Scorer(Protocol):
    """What a stage needs from a reranker (a :class:`crossrank.Reranker` is one)."""

    name: str

    def score(self, query: str, documents: Sequence[str]) -> Any: ...


@dataclass
class StageRun:
    """The ranked output and the timings of one stage."""

    name: str
    retriever: str
    reranker: str | None
    run: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  #: qid -> (docid, score) best first
    latencies_ms: dict[str, float] = field(default_factory=dict)  #: qid -> time for that query
    failures: dict[str, str] = field(default_factory=dict)  #: qid -> why the query failed (ranked empty)
    #: qid -> candidates this stage actually ranked: retrieved (first stage) or reranked (+ce), which
    #: can be far fewer than the depth or top N asked for when the first stage finds few documents
    candidates: dict[str, int] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(self.latencies_ms.values()) / 1000.0

    def percentile_ms(self, q: float) -> float:
        values = list(self.latencies_ms.values())
        return float(np.percentile(values, q)) if values else 0.0

    def ranked_ids(self) -> dict[str, list[str]]:
        return {qid: [doc for doc, _ in ranked] for qid, ranked in self.run.items()}


def parse_stages(text: str) -> list[str]:
    """``"bm25,bm25+ce"`` -> the stage names, checked; ``all`` selects every stage."""
    names = [s.strip().lower() for s in text.split(",") if s.strip()]
    if names == ["all"]:
        return list(ALL_STAGES)
    unknown = [s for s in names if s not in ALL_STAGES]
    if unknown or not names:
        raise InvalidInput(f"unknown stage(s) {unknown or text!r}: choose from {', '.join(ALL_STAGES)} or 'all'")
    return list(dict.fromkeys(names))


def first_stage_of(stage: str) -> str:
    return stage.split(RERANK_SUFFIX)[0]


def stages_to_run(selected: Sequence[str]) -> list[str]:
    """The selected stages plus the first stage of each reranked one, in canonical order."""
    wanted = set(selected) | {first_stage_of(s) for s in selected}
    return [s for s in ALL_STAGES if s in wanted]


def run_stages(
    stages: Sequence[str],
    retrievers: Mapping[str, Retriever],
    queries: Mapping[str, str],
    *,
    reranker: Scorer | None = None,
    depth: int = 100,
    top_n: int = 100,
    progress: bool = True,
    rerankers: Mapping[str, Scorer] | None = None,
) -> dict[str, StageRun]:
    """Run ``stages`` over ``queries``; each first stage is queried once per query.

    ``depth`` candidates are retrieved (and evaluated) per query; a reranked stage reorders
    the first ``top_n`` of them and keeps the rest below, in first-stage order. Several
    rerankers (``rerankers``: label -> scorer) compare side by side on the very same
    candidates: each reranked stage becomes one stage per reranker, ``bm25+ce@LABEL``.
    """
    if depth < 1 or top_n < 1:
        raise InvalidInput("depth and top_n must be positive")
    names = stages_to_run(stages)
    scorers: dict[str, Scorer] = dict(rerankers or {})
    if reranker is not None and not scorers:
        scorers = {reranker.name: reranker}
    if any(s.endswith(RERANK_SUFFIX) for s in names) and not scorers:
        raise InvalidInput("a +ce stage needs a reranker")
    results: dict[str, StageRun] = {}
    for kind in (s for s in names if not s.endswith(RERANK_SUFFIX)):
        if kind not in retrievers:
            raise InvalidInput(f"no {kind} retriever was given")
        retriever = retrievers[kind]
        first = results[kind] = StageRun(kind, retriever.name, None)
        reranked: list[tuple[StageRun, Scorer]] = []
        if kind + RERANK_SUFFIX in names:
            for label, scorer in scorers.items():
                name = reranked_stage(kind, label if len(scorers) > 1 else None)
                results[name] = StageRun(name, retriever.name, scorer.name)
                reranked.append((results[name], scorer))
        label = kind if not reranked else f"{kind} (+ rerank top {top_n}" + (
            f" by {len(reranked)} models)" if len(reranked) > 1 else ")")
        progress_bar = bar(len(queries), label, unit=" queries", enabled=progress)
        try:
            for qid, query in queries.items():
                _run_query(qid, query, retriever, first, reranked, depth, top_n)
                progress_bar.update(1)
        finally:
            progress_bar.close()
    return results


def reranked_stage(kind: str, label: str | None = None) -> str:
    """``bm25+ce``, or ``bm25+ce@LABEL`` when several rerankers are compared."""
    return kind + RERANK_SUFFIX + (f"@{label}" if label else "")


def is_reranked(stage: str) -> bool:
    return RERANK_SUFFIX in stage


def _run_query(
    qid: str, query: str, retriever: Retriever, first: StageRun, reranked: list[tuple[StageRun, Scorer]],
    depth: int, top_n: int,
) -> None:
    started = time.perf_counter()
    try:
        found = [c for c in retriever.retrieve(query, depth) if c.id != qid]
    except Exception as exc:  # one query's failure is recorded; the other queries' work is kept
        _fail(first, qid, query, exc)
        for stage, _ in reranked:
            _fail(stage, qid, query, exc, f"first stage failed: {describe(exc)}")
        return
    retrieve_ms = (time.perf_counter() - started) * 1000.0
    first.run[qid] = [(c.id, c.score) for c in found]
    first.latencies_ms[qid] = retrieve_ms
    first.candidates[qid] = len(found)
    for stage, scorer in reranked:
        started = time.perf_counter()
        try:
            stage.run[qid] = rerank_top(scorer, query, found, top_n)
        except Exception as exc:
            _fail(stage, qid, query, exc)
            continue
        stage.candidates[qid] = min(top_n, len(found))
        stage.latencies_ms[qid] = retrieve_ms + (time.perf_counter() - started) * 1000.0


def describe(exc: BaseException) -> str:
    """One line saying what went wrong: crossrank's own message, else the exception's type and text."""
    from crossrank.errors import CrossrankError

    return str(exc) if isinstance(exc, CrossrankError) else f"{type(exc).__name__}: {exc}"


def _fail(stage: StageRun, qid: str, query: str, exc: BaseException, message: str | None = None) -> None:
    stage.failures[qid] = message or describe(exc)
    stage.run[qid] = []
    if message is None:
        log.warning("%s: query %s (%.60r) failed, counted as retrieving nothing: %s", stage.name, qid, query,
                    stage.failures[qid], exc_info=log.isEnabledFor(logging.DEBUG))


def rerank_top(reranker: Scorer, query: str, found: list[Candidate], top_n: int) -> list[tuple[str, float]]:
    """Rerank the first ``top_n`` candidates; the rest follow in first-stage order, scored below."""
    head, tail = found[:top_n], found[top_n:]
    if not head:
        return [(c.id, c.score) for c in tail]
    hits = rerank_candidates(reranker, query, head, len(head))  # type: ignore[arg-type]
    ranked = [(hit.id, float(hit.rerank_score or 0.0)) for hit in hits]
    floor = min(score for _, score in ranked)
    ranked.extend((c.id, floor - i) for i, c in enumerate(tail, start=1))
    return ranked
