"""The engine-independent part of ``rerank-run`` on a data engine (crossrank.batch.run), with the
pairs scored in this process: same file as the single-process path, resuming, bad rows, lost rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from batch_inputs import assert_same_run, generated_run
from crossrank import Reranker
from crossrank.batch.run import Job, run_on_engine, spill_pairs
from crossrank.batch.scorer import PairScorer, RerankerSpec
from crossrank.evaluate.rerank_run import rerank_run

if TYPE_CHECKING:
    from pandas import DataFrame

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    info, run = generated_run(tmp_path_factory.mktemp("run"), queries=6, candidates=6)
    return run, info.path / "corpus.jsonl", info.path / "queries.jsonl"


@pytest.fixture(scope="module")
def scorer(bert_dir: Path, model_cache: Path) -> PairScorer:
    return PairScorer(RerankerSpec(str(bert_dir), {"cache_dir": str(model_cache), "batch_size": 4}), keep=("pos",))


def here(
    scorer: PairScorer, spoil: str | None = None, drop: str | None = None
) -> Callable[[list[Path]], Iterator[DataFrame]]:
    """An in-process 'engine': scores the frames in reverse row order (engines do not keep order);
    ``spoil`` makes a row of that query bad, ``drop`` loses a row of that query."""
    def score(parts: list[Path]) -> Iterator[DataFrame]:
        for part in parts:
            frame = pd.read_parquet(part).iloc[::-1].copy()
            if spoil is not None:
                frame.loc[frame.index[frame["qid"] == spoil][0], "text"] = None
            answer = scorer(frame)
            if drop is not None:
                answer = answer.drop(answer.index[(answer["qid"] == drop) & (answer["pos"] == 1)])  # a middle one
            yield answer
    return score


def test_same_file_as_single_process_and_resumes(inputs: tuple[Path, Path, Path], scorer: PairScorer,
                                                 bert_reranker: Reranker, tmp_path: Path) -> None:
    reference = tmp_path / "single.trec"
    rerank_run(*inputs, reference, bert_reranker, top_n=4, keep_rest=True, tag="ce", progress=False)
    out = tmp_path / "engine.trec"
    report = run_on_engine(Job(*inputs, out, top_n=4, keep_rest=True, tag="ce"), "m", here(scorer))
    assert report.reranked == 6 and not report.failures
    assert_same_run(out, reference)
    # cut after 3 queries and a torn line: the engine path resumes like the single-process one
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[: 3 * 6]) + "q3 Q0 x 1 0.5")
    report = run_on_engine(Job(*inputs, out, top_n=4, keep_rest=True, tag="ce"), "m", here(scorer))
    assert report.skipped == 2 and report.reranked == 4
    assert_same_run(out, reference)


def test_a_bad_row_fails_its_query_with_its_ids_and_the_rest_is_written(
    inputs: tuple[Path, Path, Path], scorer: PairScorer, tmp_path: Path
) -> None:
    out = tmp_path / "engine.trec"
    report = run_on_engine(Job(*inputs, out, top_n=4, tag="ce"), "m", here(scorer, spoil="q2"))
    assert list(report.failures) == ["q2"]
    assert "qid q2, docid" in report.failures["q2"] and "missing" in report.failures["q2"]
    assert report.reranked == 5 and "q2 " not in out.read_text()


def test_a_row_the_engine_lost_fails_its_query_instead_of_a_wrong_ranking(
    inputs: tuple[Path, Path, Path], scorer: PairScorer, tmp_path: Path
) -> None:
    out = tmp_path / "engine.trec"
    report = run_on_engine(Job(*inputs, out, top_n=4, tag="ce"), "m", here(scorer, drop="q1"))
    assert list(report.failures) == ["q1"] and "returned 2 scores for 3 documents" in report.failures["q1"]
    assert report.reranked == 5


def test_the_pairs_are_spilled_in_parts_of_whole_queries_and_removed_after(
    inputs: tuple[Path, Path, Path], scorer: PairScorer, tmp_path: Path
) -> None:
    """The driver hands the engine Parquet parts, not frames it holds: a run of millions of pairs
    never sits in its memory. Parts hold whole queries, in run order; the spill is removed."""
    spill = tmp_path / "spill"
    spill.mkdir()
    job = Job(*inputs, tmp_path / "out.trec", top_n=4, tag="ce", spill_dir=spill)
    parts, order = spill_pairs(job, tmp_path, rows=5)
    frames = [pd.read_parquet(p) for p in parts]
    assert [len(f) for f in frames] == [6, 6, 6]  # 3 pairs per query, cut after whole queries
    assert order == [f"q{i}" for i in range(6)]
    assert [q for f in frames for q in dict.fromkeys(f["qid"])] == order  # no query split across parts
    seen: list[list[Path]] = []

    def engine(parts: list[Path]) -> Iterator[DataFrame]:
        seen.append(parts)
        return here(scorer)(parts)

    report = run_on_engine(job, "m", engine)
    assert report.reranked == 6 and seen and all(p.parent.parent == spill for p in seen[0])
    assert list(spill.iterdir()) == []
