"""Inputs and checks shared by the Ray Data and Spark tests: a small generated TREC run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from crossrank.batch.scorer import PairScorer, RerankerSpec
from crossrank.evaluate.synthetic import SyntheticInfo, write_synthetic_beir
from crossrank.evaluate.trec import iter_run
from crossrank.retrieval.records import read_records


def generated_run(directory: Path, queries: int = 12, candidates: int = 10) -> tuple[SyntheticInfo, Path]:
    """A BEIR-style corpus and a run of ``candidates`` documents per query (plus one missing document)."""
    info = write_synthetic_beir(directory / "syn", queries=queries, documents=max(60, 6 * queries + 1))
    ids = sorted(r.id for r in read_records(info.path / "corpus.jsonl"))
    run = directory / "first.trec"
    with open(run, "w") as handle:
        for q in range(queries):
            qid = f"q{q}"
            picked = [ids[(q * 7 + k * 3) % len(ids)] for k in range(candidates)]
            picked.insert(3, "not-in-corpus")
            handle.writelines(f"{qid} Q0 {doc} {r} {100 - r}.5 bm25\n" for r, doc in enumerate(picked, 1))
    return info, run


def assert_same_run(actual: Path, expected: Path) -> None:
    """Same queries, same documents in the same order, scores within 1e-6."""
    got, want = dict(iter_run(actual)), dict(iter_run(expected))
    assert list(got) == list(want) and want
    for qid in want:
        assert [r.docid for r in got[qid]] == [r.docid for r in want[qid]], qid
        assert [r.score for r in got[qid]] == pytest.approx([r.score for r in want[qid]], abs=1e-6), qid


def crash_marker(spec: RerankerSpec) -> Path:
    """The file that says a :class:`CrashOnce` scorer already killed its worker."""
    return Path(spec.options["cache_dir"]).parent / "worker-crashed"


class CrashOnce(PairScorer):
    """Kills its own worker process (a Ray actor, a Spark Python worker) on its first batch, once:
    a marker file beside the model cache remembers, as class attributes do not travel to workers."""

    def __call__(self, batch: Any) -> Any:
        marker = crash_marker(self.spec)
        if not marker.exists():
            marker.touch()
            os._exit(1)
        return super().__call__(batch)


def spec_of(bert_dir: Path, model_cache: Path) -> RerankerSpec:
    """The tiny test cross-encoder as the engines' scorers build it."""
    return RerankerSpec(str(bert_dir), {"cache_dir": str(model_cache), "batch_size": 4})


def restore(saved: dict[str, str | None]) -> None:
    """Put environment variables back as ``saved`` recorded them (None: was not set)."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
