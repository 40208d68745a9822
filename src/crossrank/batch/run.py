"""``rerank-run`` on a data engine: the run becomes rows of pairs, the engine scores them, and
the single-process writer (:func:`crossrank.evaluate.rerank_run.rerank_run`) writes the output
from those scores, so both paths share one definition of order, ties, ``--keep-rest``,
resuming and per-query failures, and give the same file.

Three steps: :func:`spill_pairs` reads the run, queries and corpus (the documents of the top N
only) and writes the pairs as Parquet parts of (qid, docid, pos, query, text) into a spill
directory, so the driver never holds them all; an engine reads and scores them (Ray Data or
Spark, see :mod:`crossrank.batch.ray_data` and :mod:`crossrank.batch.spark`); :func:`write_scored`
replays the run through the writer with :class:`Precomputed` answering each query's scores
(only the scores are kept on the driver). A query with a bad row is reported as failed with the
row's ids, and the rest are written.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from crossrank.errors import InvalidInput, ModelError
from crossrank.evaluate.rerank_run import RerankRunReport, _needed_documents, _store_documents, read_queries, rerank_run
from crossrank.evaluate.trec import completed_queries, iter_run
from crossrank.extras import require
from crossrank.retrieval.docstore import DocStore
from crossrank.retrieval.records import CorpusFormat

if TYPE_CHECKING:
    import pandas as pd

#: rows per pandas frame handed to an engine
FRAME_ROWS = 20_000


@dataclass
class Job:
    """One ``rerank-run`` on an engine: its inputs and options."""

    run: Path
    corpus: Path
    queries: Path
    out: Path
    top_n: int = 100
    keep_rest: bool = False
    resume: bool = True
    tag: str | None = None
    corpus_format: CorpusFormat = "auto"
    progress: bool = False
    #: where the pairs are spilled as Parquet for the engine to read (default: beside ``out``); for
    #: Spark on a cluster of several machines, a directory every executor can read
    spill_dir: Path | None = None


def _done(job: Job) -> set[str]:
    """The queries the writer will skip, without changing ``out`` (the writer trims it later)."""
    if not job.resume or not job.out.exists():
        return set()
    with tempfile.TemporaryDirectory(prefix=".crossrank-done-", dir=job.out.parent) as tmp:
        copy = Path(tmp) / "out.trec"
        shutil.copyfile(job.out, copy)
        return completed_queries(copy)


def pair_frames(job: Job, rows: int = FRAME_ROWS) -> Iterator[pd.DataFrame]:
    """The pairs the writer will ask for, in its order, as frames of (qid, docid, pos, query, text)."""
    pd = require("pandas", "ray", "Batch reranking on a data engine")
    if job.top_n < 1:
        raise InvalidInput("top_n must be positive")
    if job.run.resolve() == job.out.resolve():
        raise InvalidInput("the output file must differ from the input run")
    texts = read_queries(job.queries)
    done = _done(job)
    needed, _ = _needed_documents(job.run, job.top_n, done)
    job.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".crossrank-pairs-", dir=job.out.parent) as tmp:
        ordinals = _store_documents(job.corpus, job.corpus_format, needed, Path(tmp), False)
        store = DocStore(Path(tmp))
        columns: dict[str, list[object]] = {"qid": [], "docid": [], "pos": [], "query": [], "text": []}
        try:
            for qid, ranked in iter_run(job.run):
                if qid in done or qid not in texts:
                    continue
                head = [r for r in ranked[: job.top_n] if r.docid in ordinals]
                for pos, (row, (_, text)) in enumerate(zip(head, store.get([ordinals[r.docid] for r in head]))):
                    for name, value in zip(columns, (qid, row.docid, pos, texts[qid], text)):
                        columns[name].append(value)
                if len(columns["qid"]) >= rows:
                    yield pd.DataFrame(columns)
                    columns = {name: [] for name in columns}
            if columns["qid"]:
                yield pd.DataFrame(columns)
        finally:
            store.close()


@dataclass
class _Scored:
    qid: str
    scores: np.ndarray
    error: str | None


def collect(frames: Sequence[pd.DataFrame] | Iterator[pd.DataFrame]) -> deque[_Scored]:
    """Per-query scores from the engine's answer frames (qid, pos, score, error), in the order
    the queries first appear; the rows of a query may come in any order and any frames."""
    pd = require("pandas", "ray", "Batch reranking on a data engine")
    by_query: dict[str, dict[int, float]] = {}
    errors: dict[str, str] = {}
    for frame in frames:
        for qid, pos, score, error in zip(frame["qid"], frame["pos"], frame["score"], frame["error"]):
            by_query.setdefault(str(qid), {})[int(pos)] = float("nan") if pd.isna(score) else float(score)
            if isinstance(error, str) and str(qid) not in errors:  # engines give None, NaN or NA for none
                errors[str(qid)] = str(error)
    scored: deque[_Scored] = deque()
    for qid, positions in by_query.items():
        values = np.full(max(positions) + 1, np.nan, dtype=np.float64)  # a position never returned stays NaN
        values[list(positions)] = list(positions.values())
        scored.append(_Scored(qid, values, errors.get(qid)))
    return scored


class Precomputed:
    """The writer's scorer: answers each query with the scores the engine computed for it.

    The writer asks for the queries in run order, the same order the pairs were made in; a
    query the engine lost or that does not match is an error (never a silent wrong answer).
    """

    def __init__(self, name: str, scored: dict[str, _Scored], order: Sequence[str]) -> None:
        self.name = name
        self._scored = scored
        self._order = deque(order)

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        if not self._order:
            raise ModelError("the engine returned no scores for this query")
        entry = self._scored.get(self._order.popleft())
        if entry is None:
            raise ModelError("the engine returned no scores for this query")
        if entry.error is not None:
            raise InvalidInput(f"query {entry.qid}: {entry.error}")
        if len(entry.scores) != len(documents) or bool(np.isnan(entry.scores).any()):
            returned = int((~np.isnan(entry.scores)).sum())
            raise ModelError(f"query {entry.qid}: the engine returned {returned} scores for {len(documents)} "
                             "documents")
        return entry.scores


def spill_pairs(job: Job, directory: Path, rows: int = FRAME_ROWS) -> tuple[list[Path], list[str]]:
    """Write the pairs as Parquet parts of about ``rows`` rows (whole queries) into ``directory``:
    the parts and the queries in run order."""
    parts: list[Path] = []
    order: dict[str, None] = {}
    for number, frame in enumerate(pair_frames(job, rows)):
        part = directory / f"pairs-{number:06d}.parquet"
        frame.to_parquet(part, index=False)
        parts.append(part)
        order.update(dict.fromkeys(frame["qid"]))
    return parts, list(order)


def run_on_engine(
    job: Job, name: str, score_parts: Callable[[list[Path]], Iterator[pd.DataFrame]]
) -> RerankRunReport:
    """Spill the pairs, score them with ``score_parts`` (the engine reads the Parquet parts and
    yields frames of qid, pos, score, error), write the output."""
    started = time.perf_counter()
    job.out.parent.mkdir(parents=True, exist_ok=True)
    spill = job.spill_dir or job.out.parent
    spill.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".crossrank-pairs-", dir=spill) as tmp:
        parts, order = spill_pairs(job, Path(tmp))
        scored = {entry.qid: entry for entry in collect(score_parts(parts))} if parts else {}
    report = write_scored(job, name, scored, order)
    report.seconds = time.perf_counter() - started
    return report


def write_scored(job: Job, name: str, scored: dict[str, _Scored], order: Sequence[str]) -> RerankRunReport:
    return rerank_run(
        job.run, job.corpus, job.queries, job.out, Precomputed(name, scored, order), top_n=job.top_n,
        keep_rest=job.keep_rest, resume=job.resume, tag=job.tag, corpus_format=job.corpus_format,
        progress=job.progress,
    )
