"""Rerank an existing TREC run (from Anserini, Pyserini, Elasticsearch...) with a cross-encoder.

Streaming and memory-conscious: the run is read twice, one query at a time (first to learn
which documents its top N needs, then to rerank). Only the texts of those documents are kept,
and on disk, not in memory: they go into a temporary document store (the index's own), read
back by offset per query. Resumable: queries already complete in the output are skipped, and
a query cut short by a crash is redone (see :func:`crossrank.evaluate.trec.completed_queries`).
A query whose reranking fails is reported (``failures``), left out of the output and the run
goes on; running again with the same output retries just the failed queries.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from crossrank.errors import InvalidInput
from crossrank.evaluate.lines import text_lines
from crossrank.evaluate.stages import Scorer, describe, rerank_top
from crossrank.evaluate.trec import RunWriter, completed_queries, iter_run
from crossrank.progress import bar
from crossrank.retrieval.base import Candidate
from crossrank.retrieval.docstore import DocStore, DocStoreWriter
from crossrank.retrieval.records import CorpusFormat, ReadStats, read_records
from crossrank.texts import check_text

log = logging.getLogger(__name__)


@dataclass
class RerankRunReport:
    queries: int = 0  #: queries in the input run
    reranked: int = 0  #: queries reranked by this call
    skipped: int = 0  #: queries already complete in the output (resumed)
    no_query_text: int = 0  #: run queries absent from the queries file (left out of the output)
    pairs: int = 0  #: (query, document) pairs scored
    missing_documents: int = 0  #: run documents absent from the corpus (left out)
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)  #: qid -> why reranking it failed (left out)


def read_queries(path: str | Path) -> dict[str, str]:
    """Queries from BEIR ``queries.jsonl`` (``_id``, ``text``) or a TSV ``qid<TAB>text`` file."""
    source = Path(path)
    if not source.is_file():
        raise InvalidInput(f"queries file not found: {source}")
    queries: dict[str, str] = {}
    for number, line in text_lines(source):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than Python parses
                raise InvalidInput(f"{source}:{number}: not valid JSON ({exc})") from exc
            qid, text = record.get("_id", record.get("id")), record.get("text")
        else:
            qid, _, text = line.rstrip("\r\n").partition("\t")
        if qid is None or not isinstance(text, str) or not text.strip():
            raise InvalidInput(f"{source}:{number}: expected {{'_id', 'text'}} JSON or 'qid<TAB>text'")
        queries[str(qid)] = check_text(text, f"{source}:{number}: the query")
    return queries


def _needed_documents(run: Path, top_n: int, done: set[str]) -> tuple[set[str], int]:
    needed: set[str] = set()
    count = 0
    for qid, rows in iter_run(run):
        count += 1
        if qid not in done:
            needed.update(row.docid for row in rows[:top_n])
    return needed, count


def rerank_run(
    run: str | Path,
    corpus: str | Path,
    queries: str | Path,
    out: str | Path,
    reranker: Scorer,
    *,
    top_n: int = 100,
    keep_rest: bool = False,
    resume: bool = True,
    tag: str | None = None,
    corpus_format: CorpusFormat = "auto",
    progress: bool = True,
) -> RerankRunReport:
    """Rerank the top ``top_n`` documents of each query of ``run``; write a TREC run to ``out``.

    ``keep_rest`` also writes the documents below ``top_n``, in their original order, scored
    below the reranked ones (keeps deep recall for the evaluation). ``resume=False`` starts
    the output afresh. ``corpus_format`` is the corpus reader's (``auto``: a file named
    corpus.jsonl is BEIR, other JSONL has ``id``/``text``).
    """
    if top_n < 1:
        raise InvalidInput("top_n must be positive")
    started = time.perf_counter()
    run, out = Path(run), Path(out)
    if run.resolve() == out.resolve():
        raise InvalidInput("the output file must differ from the input run")
    report = RerankRunReport()
    texts = read_queries(queries)
    done = completed_queries(out) if resume else set()
    needed, report.queries = _needed_documents(run, top_n, done)
    log.info("%d queries, %d distinct documents to rerank; %d already done", report.queries, len(needed), len(done))

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".crossrank-rerank-run-", dir=out.parent) as tmp:
        ordinals = _store_documents(Path(corpus), corpus_format, needed, Path(tmp), progress)
        store = DocStore(Path(tmp))
        report.missing_documents = len(needed) - len(ordinals)
        if report.missing_documents:
            log.warning("%d documents of the run are not in %s; they are left out", report.missing_documents, corpus)
        progress_bar = bar(report.queries, "reranking", unit=" queries", enabled=progress, initial=0)
        default_tag = "crossrank-" + Path(str(getattr(reranker, "name", "rerank"))).name.replace(" ", "_")
        with RunWriter(out, tag or default_tag, append=resume) as writer:
            try:
                for qid, rows in iter_run(run):
                    progress_bar.update(1)
                    if qid in done:
                        report.skipped += 1
                        continue
                    if qid not in texts:
                        report.no_query_text += 1
                        continue
                    head = [r for r in rows[:top_n] if r.docid in ordinals]  # the others are not in the corpus
                    tail = rows[top_n:] if keep_rest else []  # never scored: no text needed
                    stored = store.get([ordinals[r.docid] for r in head])
                    candidates = [Candidate(r.docid, text, r.score, i) for i, (r, (_, text)) in
                                  enumerate(zip(head, stored), start=1)]
                    candidates += [Candidate(r.docid, "", r.score, i) for i, r in
                                   enumerate(tail, start=len(head) + 1)]
                    try:
                        ranked = rerank_top(reranker, texts[qid], candidates, len(head))
                    except Exception as exc:  # recorded; the queries done so far stay written
                        report.failures[qid] = describe(exc)
                        log.warning("query %s failed, left out of the output: %s", qid, report.failures[qid])
                        continue
                    writer.write(qid, ranked)
                    report.reranked += 1
                    report.pairs += len(head)
            finally:
                progress_bar.close()
                store.close()
    if report.no_query_text:
        log.warning("%d run queries have no text in %s; they are left out", report.no_query_text, queries)
    report.seconds = time.perf_counter() - started
    return report


def _store_documents(
    corpus: Path, corpus_format: CorpusFormat, needed: set[str], directory: Path, progress: bool
) -> dict[str, int]:
    """Copy the needed documents of the corpus into a document store; id -> ordinal."""
    writer = DocStoreWriter(directory)
    ordinals: dict[str, int] = {}
    stats = ReadStats()
    progress_bar = bar(None, "reading corpus", unit=" docs", enabled=progress)
    try:
        for record in read_records(corpus, format=corpus_format, stats=stats):
            progress_bar.update(1)
            if record.id in needed and record.id not in ordinals:
                ordinals[record.id] = writer.add(record.id, record.text)
    finally:
        progress_bar.close()
        writer.close()
    return ordinals
