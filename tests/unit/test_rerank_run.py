"""``rerank-run``: rerank an existing TREC run, streaming and resumable."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from crossrank import Reranker
from crossrank.cli import main
from crossrank.errors import InvalidInput
from crossrank.evaluate.rerank_run import _store_documents, read_queries, rerank_run
from crossrank.evaluate.synthetic import SyntheticInfo, write_synthetic_beir
from crossrank.evaluate.trec import iter_run, read_run
from crossrank.retrieval.docstore import DocStore
from crossrank.retrieval.records import read_records


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticInfo:
    return write_synthetic_beir(tmp_path_factory.mktemp("beir") / "syn", queries=5, documents=50)


@pytest.fixture(scope="module")
def texts(synthetic: SyntheticInfo) -> dict[str, str]:
    return {r.id: r.text for r in read_records(synthetic.path / "corpus.jsonl")}


@pytest.fixture(scope="module")
def queries(synthetic: SyntheticInfo) -> dict[str, str]:
    return read_queries(synthetic.path / "queries.jsonl")


@pytest.fixture()
def first_stage(tmp_path: Path, texts: dict[str, str], queries: dict[str, str]) -> Path:
    """A run of 8 documents per query in an arbitrary order, scores descending."""
    ids = sorted(texts)
    path = tmp_path / "first.trec"
    with open(path, "w") as handle:
        for q, qid in enumerate(queries):
            picked = ids[q * 3 : q * 3 + 8]
            handle.writelines(f"{qid} Q0 {doc} {r} {100 - r}.5 bm25\n" for r, doc in enumerate(picked, 1))
    return path


class Counting:
    """Wraps a reranker, counting calls; optionally stops the job after ``fail_after`` queries."""

    def __init__(self, inner: Reranker, fail_after: int | None = None) -> None:
        self.inner = inner
        self.name = "counting"
        self.calls = 0
        self.fail_after = fail_after

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        return self.inner.score(query, documents)


def test_reranks_the_top_n_by_cross_encoder_score(
    tmp_path: Path, first_stage: Path, synthetic: SyntheticInfo, texts: dict[str, str], queries: dict[str, str],
    bert_reranker: Reranker,
) -> None:
    out = tmp_path / "reranked.trec"
    report = rerank_run(
        first_stage, synthetic.path / "corpus.jsonl", synthetic.path / "queries.jsonl", out, bert_reranker,
        top_n=5, tag="ce", progress=False,
    )
    assert (report.queries, report.reranked, report.pairs, report.missing_documents) == (len(queries), len(queries),
                                                                                         5 * len(queries), 0)
    inputs = read_run(first_stage)
    for qid, rows in iter_run(out):
        head = inputs[qid][:5]
        expected = bert_reranker.score(queries[qid], [texts[d] for d in head])
        order = np.argsort(-expected, kind="stable")
        assert [r.docid for r in rows] == [head[i] for i in order]
        assert [r.score for r in rows] == pytest.approx([float(expected[i]) for i in order], abs=1e-6)
        assert {r.tag for r in rows} == {"ce"}


def test_keep_rest_appends_the_tail_in_its_order(
    tmp_path: Path, first_stage: Path, synthetic: SyntheticInfo, bert_reranker: Reranker
) -> None:
    out = tmp_path / "reranked.trec"
    rerank_run(first_stage, synthetic.path / "corpus.jsonl", synthetic.path / "queries.jsonl", out, bert_reranker,
               top_n=3, keep_rest=True, progress=False)
    inputs, outputs = read_run(first_stage), read_run(out)
    for qid, ranked in outputs.items():
        assert sorted(ranked[:3]) == sorted(inputs[qid][:3]) and ranked[3:] == inputs[qid][3:]


def test_resume_skips_finished_queries_and_redoes_a_cut_one(
    tmp_path: Path, first_stage: Path, synthetic: SyntheticInfo, queries: dict[str, str], bert_reranker: Reranker
) -> None:
    corpus, query_file = synthetic.path / "corpus.jsonl", synthetic.path / "queries.jsonl"
    reference = tmp_path / "reference.trec"
    rerank_run(first_stage, corpus, query_file, reference, bert_reranker, top_n=4, tag="t", progress=False)

    out = tmp_path / "resumed.trec"
    with pytest.raises(KeyboardInterrupt):
        rerank_run(first_stage, corpus, query_file, out, Counting(bert_reranker, fail_after=3), top_n=4, tag="t",
                   progress=False)
    assert len(read_run(out)) == 3
    with open(out, "a") as handle:
        handle.write("q3 Q0 d3-0 1 0.9")  # a torn line from a crash while writing the 4th query
    second = Counting(bert_reranker)
    report = rerank_run(first_stage, corpus, query_file, out, second, top_n=4, tag="t", progress=False)
    # the last complete query is redone too (it might have been cut), the first two are skipped
    assert report.skipped == 2 and second.calls == len(queries) - 2
    assert out.read_text() == reference.read_text()


def test_restart_overwrites(
    tmp_path: Path, first_stage: Path, synthetic: SyntheticInfo, queries: dict[str, str], bert_reranker: Reranker
) -> None:
    out = tmp_path / "out.trec"
    out.write_text("zz Q0 x 1 1.0 old\n")
    counting = Counting(bert_reranker)
    rerank_run(first_stage, synthetic.path / "corpus.jsonl", synthetic.path / "queries.jsonl", out, counting,
               top_n=2, resume=False, progress=False)
    assert counting.calls == len(queries) and "zz" not in read_run(out)


def test_missing_documents_and_queries_are_left_out_and_counted(
    tmp_path: Path, synthetic: SyntheticInfo, bert_reranker: Reranker
) -> None:
    run = tmp_path / "run.trec"
    run.write_text("q0 Q0 nosuchdoc 1 9.0 x\nq0 Q0 d0-0 2 8.0 x\nq-unknown Q0 d0-1 1 1.0 x\n")
    out = tmp_path / "out.trec"
    report = rerank_run(run, synthetic.path / "corpus.jsonl", synthetic.path / "queries.jsonl", out, bert_reranker,
                        progress=False)
    assert (report.missing_documents, report.no_query_text, report.reranked) == (1, 1, 1)
    assert read_run(out) == {"q0": ["d0-0"]}


def test_only_the_documents_of_the_top_n_are_stored(tmp_path: Path, first_stage: Path, synthetic: SyntheticInfo) -> None:
    wanted = {doc for ranked in read_run(first_stage).values() for doc in ranked[:2]}
    ordinals = _store_documents(synthetic.path / "corpus.jsonl", "auto", wanted, tmp_path, progress=False)
    assert set(ordinals) == wanted and len(wanted) < 50
    stored = DocStore(tmp_path).get([ordinals[d] for d in sorted(wanted)])
    assert [doc for doc, _ in stored] == sorted(wanted)


def test_queries_from_tsv(tmp_path: Path) -> None:
    path = tmp_path / "topics.tsv"
    path.write_text("1\twhat is bm25\n2\tcross encoders\n")
    assert read_queries(path) == {"1": "what is bm25", "2": "cross encoders"}
    path.write_text(json.dumps({"_id": "a", "text": "x"}) + "\nno tab here\n")
    with pytest.raises(InvalidInput, match=":2: expected"):
        read_queries(path)
    path.write_bytes(b"1\tcaf\xe9\n")
    with pytest.raises(InvalidInput, match=r"topics.tsv:1: not UTF-8 text"):
        read_queries(path)
    path.write_text('1\tok\n{"_id": "2", "text": "half \\udc00"}\n')
    with pytest.raises(InvalidInput, match=r"topics.tsv:2: the query contains an unpaired UTF-16 surrogate"):
        read_queries(path)


def test_output_must_differ_from_input(tmp_path: Path, first_stage: Path, synthetic: SyntheticInfo,
                                       bert_reranker: Reranker) -> None:
    with pytest.raises(InvalidInput, match="must differ"):
        rerank_run(first_stage, synthetic.path / "corpus.jsonl", synthetic.path / "queries.jsonl", first_stage,
                   bert_reranker, progress=False)


def test_cli_rerank_run(
    tmp_path: Path, first_stage: Path, synthetic: SyntheticInfo, bert_dir: Path, isolated_hf_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "cli.trec"
    args = ["rerank-run", "--run", str(first_stage), "--corpus", str(synthetic.path / "corpus.jsonl"),
            "--queries", str(synthetic.path / "queries.jsonl"), "--model", str(bert_dir), "--top-n", "3",
            "--out", str(out), "--no-progress"]
    assert main(args) == 0
    assert all(len(ranked) == 3 for ranked in read_run(out).values())
    assert main(args) == 0  # resumed: nothing left but the last query
    assert "already done" in capsys.readouterr().err
    assert main(["rerank-run", "--run", str(tmp_path / "absent.trec"), "--corpus", "c", "--queries", "q",
                 "--out", str(out), "--model", str(bert_dir)]) == 2


def test_keep_rest_with_missing_top_documents_never_scores_the_tail(
    tmp_path: Path, synthetic: SyntheticInfo, bert_reranker: Reranker
) -> None:
    run = tmp_path / "run.trec"
    run.write_text("q0 Q0 gone 1 9.0 x\nq0 Q0 d0-0 2 8.0 x\nq0 Q0 tail-only 3 7.0 x\n")
    counting = Counting(bert_reranker)
    rerank_run(run, synthetic.path / "corpus.jsonl", synthetic.path / "queries.jsonl", tmp_path / "o.trec", counting,
               top_n=2, keep_rest=True, progress=False)
    assert read_run(tmp_path / "o.trec") == {"q0": ["d0-0", "tail-only"]}
    assert counting.calls == 1


class FailsOnQuery:
    """Wraps a reranker; raises for one query text."""

    def __init__(self, inner: Reranker, bad: str) -> None:
        self.inner, self.bad, self.name, self.calls = inner, bad, "fails-on-query", 0

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if query == self.bad:
            raise RuntimeError("scoring failed")
        return self.inner.score(query, documents)


def test_a_failing_query_is_reported_left_out_and_retried_on_resume(
    tmp_path: Path, first_stage: Path, synthetic: SyntheticInfo, queries: dict[str, str], bert_reranker: Reranker
) -> None:
    corpus, query_file = synthetic.path / "corpus.jsonl", synthetic.path / "queries.jsonl"
    bad_qid = list(queries)[1]
    out = tmp_path / "out.trec"
    report = rerank_run(first_stage, corpus, query_file, out, FailsOnQuery(bert_reranker, queries[bad_qid]),
                        top_n=3, progress=False)
    assert report.failures == {bad_qid: "RuntimeError: scoring failed"}
    assert set(read_run(out)) == set(queries) - {bad_qid} and report.reranked == len(queries) - 1
    retry = FailsOnQuery(bert_reranker, "none")
    again = rerank_run(first_stage, corpus, query_file, out, retry, top_n=3, progress=False)
    assert set(read_run(out)) == set(queries) and again.failures == {}
    assert retry.calls == 2  # the failed query, and the last written one (it might have been cut)


def test_a_query_line_nested_too_deeply_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "queries.jsonl"
    path.write_text("{" + '"a": {' * 100_000 + "\n")
    with pytest.raises(InvalidInput, match="queries.jsonl:1: not valid JSON"):
        read_queries(path)
