"""TREC run files (``qid Q0 docid rank score tag``) and TREC qrels (``qid 0 docid grade``).

Runs are read one query at a time (:func:`iter_run`), so a run of millions of lines never
sits in memory whole; this needs the usual layout where each query's lines are contiguous
(what Anserini, Pyserini, Elasticsearch exports and trec_eval's own tools write). Within a
query, rows are ordered by score (descending), then by the rank column, then by document id:
the rank column settles score ties, the way the producing system ranked them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from crossrank.errors import InvalidInput
from crossrank.evaluate.lines import text_lines


@dataclass(frozen=True)
class RunRow:
    """One line of a run file."""

    qid: str
    docid: str
    rank: int
    score: float
    tag: str


def parse_run_line(line: str, where: str) -> RunRow:
    parts = line.split()
    if len(parts) != 6:
        raise InvalidInput(f"{where}: expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}")
    qid, _q0, docid, rank, score, tag = parts
    try:
        return RunRow(qid, docid, int(rank), float(score), tag)
    except ValueError as exc:
        raise InvalidInput(f"{where}: rank must be an integer and score a number ({exc})") from exc


def iter_run(path: str | Path) -> Iterator[tuple[str, list[RunRow]]]:
    """Yield ``(qid, rows)`` per query, rows best first; raises if a query's lines are split."""
    done: set[str] = set()
    current: str | None = None
    rows: list[RunRow] = []
    for number, line in text_lines(path):
        if not line.strip():
            continue
        row = parse_run_line(line, f"{path}:{number}")
        if row.qid != current:
            if current is not None:
                yield current, _ordered(rows)
                done.add(current)
            if row.qid in done:
                raise InvalidInput(
                    f"{path}:{number}: the lines of query {row.qid!r} are not contiguous; "
                    f"group them first, e.g. `sort -s -k1,1 {path} > sorted.trec`"
                )
            current, rows = row.qid, []
        rows.append(row)
    if current is not None:
        yield current, _ordered(rows)


def _ordered(rows: list[RunRow]) -> list[RunRow]:
    return sorted(rows, key=lambda r: (-r.score, r.rank, r.docid))


def read_run(path: str | Path) -> dict[str, list[str]]:
    """A whole run as query id -> document ids best first (for evaluation)."""
    return {qid: [r.docid for r in rows] for qid, rows in iter_run(path)}


def format_query(qid: str, ranked: Sequence[tuple[str, float]], tag: str) -> str:
    """The lines of one query; ``ranked`` is (docid, score) best first, ranks start at 1."""
    for value in (qid, tag, *(doc for doc, _ in ranked)):
        if not value or any(c.isspace() for c in value):
            raise InvalidInput(f"TREC run fields cannot be empty or contain whitespace: {value!r}")
    return "".join(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n" for rank, (doc, score) in enumerate(ranked, 1))


class RunWriter:
    """Write a run one query at a time; each query is flushed as one block.

    ``append=True`` continues an existing file (used to resume an interrupted job).
    """

    def __init__(self, path: str | Path, tag: str, *, append: bool = False) -> None:
        self.path = Path(path)
        self.tag = tag
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115

    def write(self, qid: str, ranked: Sequence[tuple[str, float]]) -> None:
        self._handle.write(format_query(qid, ranked, self.tag))
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_run(path: str | Path, run: Iterable[tuple[str, Sequence[tuple[str, float]]]], tag: str) -> None:
    with RunWriter(path, tag) as writer:
        for qid, ranked in run:
            writer.write(qid, ranked)


def completed_queries(path: str | Path) -> set[str]:
    """Queries already written to a run file that is being resumed.

    The last query of the file may have been cut by a crash, so its lines (and any torn
    final line) are removed from the file and it is *not* reported complete: it will be
    redone. Every earlier query is complete, since queries are written one block at a time.
    """
    path = Path(path)
    if not path.exists():
        return set()
    done: list[str] = []
    last_start = 0
    offset = 0
    with open(path, "rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break  # torn final line
            qid = raw.split(maxsplit=1)[0].decode("utf-8") if raw.strip() else None
            if qid is not None and (not done or done[-1] != qid):
                done.append(qid)
                last_start = offset
            offset += len(raw)
    if done:
        done.pop()  # possibly incomplete: redo it
    with open(path, "r+b") as handle:
        handle.truncate(last_start)
        handle.flush()
        os.fsync(handle.fileno())
    return set(done)


def read_trec_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """TREC qrels: ``qid iteration docid grade`` per line."""
    qrels: dict[str, dict[str, int]] = {}
    for number, line in text_lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 4:
            raise InvalidInput(f"{path}:{number}: expected 'qid 0 docid grade', got {len(parts)} columns")
        try:
            qrels.setdefault(parts[0], {})[parts[2]] = int(parts[3])
        except ValueError as exc:
            raise InvalidInput(f"{path}:{number}: the grade must be an integer") from exc
    return qrels


def write_trec_qrels(path: str | Path, qrels: dict[str, dict[str, int]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for qid, docs in qrels.items():
            for doc, grade in docs.items():
                handle.write(f"{qid} 0 {doc} {grade}\n")
