"""Evaluation stages and outputs on a generated BEIR dataset with planted relevant documents.

BM25 must reach the dataset's known ideal metrics; an order-preserving reranker must give
exactly the first-stage metrics; the cross-encoder stage must order by the reranker's scores;
``crossrank eval`` must write results.json, one TREC run per stage and an HTML report whose
numbers agree with each other.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from crossrank import Encoder, Reranker
from crossrank.cli import main
from crossrank.errors import InvalidInput
from crossrank.evaluate.beir import BeirDataset
from crossrank.evaluate.metrics import MEASURES, evaluate
from crossrank.evaluate.runner import EvalConfig, EvalOutcome, prepare_index, run_evaluation
from crossrank.evaluate.stages import ALL_STAGES, StageRun, parse_stages, run_stages, stages_to_run
from crossrank.evaluate.synthetic import SyntheticInfo, write_synthetic_beir
from crossrank.evaluate.trec import read_run
from crossrank.retrieval import Index
from crossrank.retrieval.base import Candidate, Retriever

Qrels = dict[str, dict[str, int]]

PNG = b"\x89PNG\r\n\x1a\n"


class OrderPreserving:
    """A reranker that returns the first-stage order unchanged (strictly decreasing scores)."""

    name = "order-preserving"

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        return np.arange(len(documents), 0, -1, dtype=np.float64)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticInfo:
    return write_synthetic_beir(tmp_path_factory.mktemp("beir") / "synthetic", queries=6, documents=60)


@pytest.fixture(scope="module")
def dataset(synthetic: SyntheticInfo) -> BeirDataset:
    return BeirDataset.open(synthetic.path)


@pytest.fixture(scope="module")
def index(dataset: BeirDataset, minilm_encoder: Encoder, tmp_path_factory: pytest.TempPathFactory) -> Index:
    path = tmp_path_factory.mktemp("eval-index") / "index"
    built, _ = prepare_index(dataset, path, encoder=minilm_encoder, encoder_name="minilm", progress=False)
    return built


@pytest.fixture(scope="module")
def qrels(dataset: BeirDataset) -> dict[str, dict[str, int]]:
    return dataset.qrels("test")


@pytest.fixture(scope="module")
def queries(dataset: BeirDataset, qrels: Qrels) -> dict[str, str]:
    return dataset.queries(qrels)


def retrievers(index: Index, encoder: Encoder) -> dict[str, Retriever]:
    return {kind: index.retriever(kind, encoder=encoder) for kind in ("bm25", "dense", "hybrid")}


def test_stage_names_and_selection() -> None:
    assert parse_stages("all") == list(ALL_STAGES)
    assert parse_stages(" bm25+ce , bm25 ,bm25") == ["bm25+ce", "bm25"]
    assert stages_to_run(["dense+ce"]) == ["dense", "dense+ce"]
    with pytest.raises(InvalidInput, match="unknown stage.*bm25, bm25\\+ce"):
        parse_stages("bm25,splade")


def test_bm25_finds_the_planted_documents(index: Index, qrels: Qrels, queries: dict[str, str], synthetic: SyntheticInfo) -> None:
    runs = run_stages(["bm25"], {"bm25": index.retriever("bm25")}, queries, progress=False)
    assert list(runs) == ["bm25"]
    assert evaluate(qrels, runs["bm25"].ranked_ids()).mean == pytest.approx(synthetic.ideal, abs=1e-12)
    assert set(runs["bm25"].latencies_ms) == set(queries)


def test_dense_and_hybrid_stages(
    index: Index, minilm_encoder: Encoder, qrels: Qrels, queries: dict[str, str], synthetic: SyntheticInfo
) -> None:
    runs = run_stages(["dense", "hybrid"], retrievers(index, minilm_encoder), queries, depth=30, progress=False)
    dense = evaluate(qrels, runs["dense"].ranked_ids()).mean
    hybrid = evaluate(qrels, runs["hybrid"].ranked_ids()).mean
    assert all(len(ranked) == 30 for ranked in runs["dense"].run.values())  # dense always fills the depth
    assert 0.3 < dense["MRR@10"] <= 1.0  # a trained bi-encoder finds the repeated topic words
    # hybrid fuses BM25's complete lists into its top 30, so it keeps BM25's recall
    assert hybrid["Recall@100"] == pytest.approx(synthetic.ideal["Recall@100"])


def test_order_preserving_reranker_yields_exactly_the_first_stage_metrics(
    index: Index, minilm_encoder: Encoder, qrels: Qrels, queries: dict[str, str]
) -> None:
    runs = run_stages(
        ALL_STAGES, retrievers(index, minilm_encoder), queries, reranker=OrderPreserving(), depth=20, top_n=5,
        progress=False,
    )
    for kind in ("bm25", "dense", "hybrid"):
        first, reranked = runs[kind], runs[kind + "+ce"]
        assert reranked.ranked_ids() == first.ranked_ids()
        assert evaluate(qrels, reranked.ranked_ids()) == evaluate(qrels, first.ranked_ids())


def test_cross_encoder_stage_orders_by_the_reranker_scores(
    index: Index, minilm_encoder: Encoder, queries: dict[str, str], bert_reranker: Reranker
) -> None:
    top_n = 3
    runs = run_stages(
        ["dense+ce"], retrievers(index, minilm_encoder), queries, reranker=bert_reranker, depth=8, top_n=top_n,
        progress=False,
    )
    texts = {doc_id: text for doc_id, text in index.docs.get(list(range(len(index))))}
    for qid, query in queries.items():
        first = runs["dense"].ranked_ids()[qid]
        reranked = runs["dense+ce"].run[qid]
        head = first[:top_n]
        expected = bert_reranker.score(query, [texts[d] for d in head])
        order = np.argsort(-expected, kind="stable")
        assert [doc for doc, _ in reranked[:top_n]] == [head[i] for i in order]
        assert [s for _, s in reranked[:top_n]] == pytest.approx([float(expected[i]) for i in order])
        assert [doc for doc, _ in reranked[top_n:]] == first[top_n:]  # the tail keeps its order, below
        assert max(s for _, s in reranked[top_n:]) < min(s for _, s in reranked[:top_n])
        assert runs["dense+ce"].latencies_ms[qid] >= runs["dense"].latencies_ms[qid]


def test_reranked_stage_without_a_reranker_is_an_error(index: Index, queries: dict[str, str]) -> None:
    with pytest.raises(InvalidInput, match="needs a reranker"):
        run_stages(["bm25+ce"], {"bm25": index.retriever("bm25")}, queries, progress=False)


# -- the whole command: outputs -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def outcome(
    synthetic: SyntheticInfo, minilm_encoder: Encoder, bert_reranker: Reranker,
    tmp_path_factory: pytest.TempPathFactory,
) -> EvalOutcome:
    config = EvalConfig(
        str(synthetic.path), tmp_path_factory.mktemp("eval-out"), stages=list(ALL_STAGES), depth=20, top_n=5,
        encoder="minilm", progress=False, notes=["random weights: a caveat for the reader"],
    )
    return run_evaluation(config, reranker=bert_reranker, encoder=minilm_encoder)


def test_results_json_has_every_stage_and_agrees_with_the_run_files(outcome: EvalOutcome, qrels: Qrels) -> None:
    results = json.loads(outcome.files["results"].read_text())
    assert [row["stage"] for row in results["stages"]] == list(ALL_STAGES)
    assert results["dataset"]["queries"] == len(qrels) and results["config"]["top_n"] == 5
    assert results["notes"] == ["random weights: a caveat for the reader"]
    for row in results["stages"]:
        run_file = outcome.files["results"].parent / row["run_file"]
        assert set(row["metrics"]) == set(MEASURES)
        assert evaluate(qrels, read_run(run_file)).mean == pytest.approx(row["metrics"], abs=1e-6)
        assert 0 < row["latency_ms"]["p50"] <= row["latency_ms"]["p95"]
        assert row["total_seconds"] > 0 and row["queries"] == len(qrels)
        per_query = results["per_query"][row["stage"]]
        assert np.mean([v["nDCG@10"] for v in per_query.values()]) == pytest.approx(row["metrics"]["nDCG@10"])


def test_trec_run_files_are_well_formed(outcome: EvalOutcome) -> None:
    for name in ALL_STAGES:
        lines = outcome.files[f"run:{name}"].read_text().splitlines()
        assert lines, name
        for line in lines:
            qid, q0, _doc, rank, score, tag = line.split()
            assert q0 == "Q0" and tag == f"crossrank-{name}" and int(rank) >= 1
            float(score)
        # ranks restart at 1 per query and scores never increase down a query
        by_query: dict[str, list[tuple[int, float]]] = {}
        for line in lines:
            qid, _, _, rank, score, _ = line.split()
            by_query.setdefault(qid, []).append((int(rank), float(score)))
        for rows in by_query.values():
            assert [r for r, _ in rows] == list(range(1, len(rows) + 1))
            assert all(a[1] >= b[1] for a, b in zip(rows, rows[1:]))


def test_html_report_is_self_contained_with_three_charts(outcome: EvalOutcome) -> None:
    page = outcome.files["report"].read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3  # metrics, latency, per-query delta
    assert all(base64.b64decode(data).startswith(PNG) for data in images)
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    for name in ALL_STAGES:
        assert f"<td>{name}</td>" in page
    assert "Per-query nDCG@10 change from reranking" in page
    assert '<p class="note">random weights: a caveat for the reader</p>' in page
    assert f"{outcome.rows[0]['metrics']['nDCG@10']:.4f}" in page


def test_index_is_reused_when_the_corpus_is_unchanged(
    outcome: EvalOutcome, synthetic: SyntheticInfo, minilm_encoder: Encoder
) -> None:
    assert outcome.payload["index"]["reused"] is False
    out = outcome.files["results"].parent
    again = run_evaluation(
        EvalConfig(str(synthetic.path), out, stages=["bm25"], encoder="minilm", progress=False),
    )
    assert again.payload["index"]["reused"] is True
    assert again.rows[0]["metrics"] == outcome.rows[0]["metrics"]


def test_cli_eval_on_the_synthetic_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["eval", "--synthetic", "--stages", "bm25", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if line.startswith("stage"))
    assert header.split()[:6] == ["stage", *MEASURES]
    bm25 = next(line for line in printed.splitlines() if line.startswith("bm25 "))
    assert bm25.split()[1] == f"{20 / 21:.4f}"  # the default synthetic set: 20 of its 21 queries have planted documents
    assert (out / "results.json").is_file() and (out / "runs" / "bm25.trec").is_file()
    assert (out / "report.html").is_file() and (out / "synthetic-data" / "corpus.jsonl").is_file()


def test_cli_rejects_unknown_stages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--synthetic", "--stages", "bm25,bm42", "--out", str(tmp_path)]) == 2
    assert "unknown stage" in capsys.readouterr().err


def test_stage_run_percentiles() -> None:
    run = StageRun("x", "x", None, latencies_ms={str(i): float(i) for i in range(1, 101)})
    assert run.percentile_ms(50) == pytest.approx(50.5) and run.percentile_ms(95) == pytest.approx(95.05)
    assert run.total_seconds == pytest.approx(5.05)


def test_rerank_run_of_the_bm25_run_reproduces_the_bm25_ce_stage(
    outcome: EvalOutcome, synthetic: SyntheticInfo, bert_reranker: Reranker, tmp_path: Path
) -> None:
    from crossrank.evaluate.rerank_run import rerank_run

    out = tmp_path / "reranked.trec"
    rerank_run(outcome.files["run:bm25"], synthetic.path / "corpus.jsonl", synthetic.path / "queries.jsonl", out,
               bert_reranker, top_n=5, keep_rest=True, progress=False)
    assert read_run(out) == read_run(outcome.files["run:bm25+ce"])


class FailsOn:
    """A first stage that raises for one query and returns nothing for the others."""

    name = "bm25"

    def __init__(self, bad: str) -> None:
        self.bad = bad

    def retrieve(self, query: str, k: int) -> list[Candidate]:
        if query == self.bad:
            raise RuntimeError("engine exploded")
        return []


def test_a_failing_query_is_recorded_and_the_others_are_kept() -> None:
    queries = {"q1": "fine", "q2": "boom", "q3": "fine too"}
    runs = run_stages(["bm25+ce"], {"bm25": FailsOn("boom")}, queries, reranker=OrderPreserving(), progress=False)
    assert set(runs["bm25"].run) == set(runs["bm25+ce"].run) == {"q1", "q2", "q3"}
    assert runs["bm25"].failures == {"q2": "RuntimeError: engine exploded"}
    assert runs["bm25+ce"].failures == {"q2": "first stage failed: RuntimeError: engine exploded"}


def _words_dataset(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    docs = {"d1": "mod_autohost apache module", "d2": "self_test harness", "d3": "compiler_builtins crate"}
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n"
                                               for k, v in docs.items()))
    queries = {"q1": "mod_autohost", "q2": "self_test", "q3": "compiler_builtins"}
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items()))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                             + "".join(f"q{i}\td{i}\t1\n" for i in (1, 2, 3)))
    return root


def test_cli_eval_of_queries_the_tokenizer_splits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _words_dataset(tmp_path / "words")
    out = tmp_path / "out"
    assert main(["eval", "--data", str(data), "--stages", "bm25", "--out", str(out), "--no-progress",
                 "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["metrics"]["nDCG@10"] == pytest.approx(1.0) and row["failed_queries"] == 0


def test_cli_eval_reports_failed_queries_and_keeps_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from crossrank.retrieval.index import BM25Retriever

    original = BM25Retriever.retrieve

    def flaky(self: BM25Retriever, query: str, k: int) -> list[Candidate]:
        if query == "self_test":
            raise ValueError("The field 'text' does not have positions indexed")
        return original(self, query, k)

    monkeypatch.setattr(BM25Retriever, "retrieve", flaky)  # the engine, not the evaluation under test
    data = _words_dataset(tmp_path / "words")
    out = tmp_path / "out"
    args = ["eval", "--data", str(data), "--stages", "bm25", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "1 query failed in stage bm25" in err and "q2: ValueError" in err
    results = json.loads((out / "results.json").read_text())
    assert results["failures"] == {"bm25": {"q2": "ValueError: The field 'text' does not have positions indexed"}}
    assert set(read_run(out / "runs" / "bm25.trec")) == {"q1", "q3"}
    assert results["stages"][0]["failed_queries"] == 1
    assert main([*args, "--strict"]) == 3


def test_several_rerankers_side_by_side_on_the_same_candidates(
    index: Index, queries: dict[str, str], bert_reranker: Reranker
) -> None:
    runs = run_stages(["bm25+ce"], {"bm25": index.retriever("bm25")}, queries, depth=8, top_n=4, progress=False,
                      rerankers={"same": OrderPreserving(), "bert": bert_reranker})
    assert list(runs) == ["bm25", "bm25+ce@same", "bm25+ce@bert"]
    assert runs["bm25+ce@same"].ranked_ids() == runs["bm25"].ranked_ids()
    assert runs["bm25+ce@bert"].reranker == bert_reranker.name
    for qid in queries:  # both reorder the very same candidates
        assert sorted(runs["bm25+ce@bert"].ranked_ids()[qid]) == sorted(runs["bm25"].ranked_ids()[qid])


def test_model_labels_are_short_and_distinct() -> None:
    from crossrank.cli.eval import model_labels

    assert model_labels(["cross-encoder/ms-marco-MiniLM-L6-v2", "runs/ft/model", "other/ft/model", "x y/"]) == [
        "ms-marco-MiniLM-L6-v2", "ft", "ft-2", "x_y"]


# -- honest reporting: candidates actually ranked, per-query table, paired tests ----------------------
class Finds:
    """A first stage that finds ``counts[query]`` documents."""

    name = "finds"

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def retrieve(self, query: str, k: int) -> list[Candidate]:
        return [Candidate(f"d{i}", f"text {i}", float(-i), i + 1) for i in range(min(k, self.counts[query]))]


def test_the_candidates_each_stage_actually_ranked_are_recorded_and_reported() -> None:
    """A header saying "top 100" while BM25 found 6 documents misleads: the count is per query."""
    from crossrank.evaluate.report import format_results, stage_summaries

    queries = {"q1": "a", "q2": "b", "q3": "c"}
    runs = run_stages(["bm25+ce"], {"bm25": Finds({"a": 2, "b": 6, "c": 40})}, queries, reranker=OrderPreserving(),
                      depth=30, top_n=10, progress=False)
    assert runs["bm25"].candidates == {"q1": 2, "q2": 6, "q3": 30}
    assert runs["bm25+ce"].candidates == {"q1": 2, "q2": 6, "q3": 10}
    evaluations = {name: evaluate({"q1": {"d0": 1}, "q2": {"d1": 1}, "q3": {"d2": 1}}, run.ranked_ids())
                   for name, run in runs.items()}
    rows = stage_summaries(runs, evaluations)
    assert rows[1]["candidates_per_query"] == {"mean": 6.0, "min": 2, "max": 10}
    table = format_results(rows)
    assert "candidates/query" in table and "6 (2-10)" in table and "12.67 (2-30)" in table


def test_paired_comparisons_count_queries_and_test_the_difference() -> None:
    from scipy import stats

    from crossrank.evaluate.metrics import Evaluation
    from crossrank.evaluate.report import comparisons, format_comparisons

    def evaluation(values: list[float]) -> Evaluation:
        per_query = {f"q{i}": {"nDCG@10": v} for i, v in enumerate(values)}
        return Evaluation({"nDCG@10": float(np.mean(values))}, per_query, len(values), 0, 0)

    base, a, b = [0.1, 0.5, 0.2, 0.4, 0.3], [0.3, 0.5, 0.6, 0.5, 0.2], [0.3, 0.5, 0.6, 0.5, 0.2]
    rows = comparisons({"bm25": evaluation(base), "bm25+ce@a": evaluation(a), "bm25+ce@b": evaluation(b),
                        "dense": evaluation(base)})
    assert [(r["stage"], r["against"]) for r in rows] == [("bm25+ce@a", "bm25"), ("bm25+ce@b", "bm25"),
                                                          ("bm25+ce@a", "bm25+ce@b")]
    first = rows[0]
    assert (first["better"], first["worse"], first["tied"], first["queries"]) == (3, 1, 1, 5)
    assert first["mean_delta"] == pytest.approx(0.12)
    assert first["p_value"] == pytest.approx(stats.ttest_rel(a, base).pvalue, abs=1e-6)
    assert rows[2]["p_value"] == 1.0 and rows[2]["tied"] == 5  # identical rankings
    text = format_comparisons(rows)
    assert "bm25+ce@a vs bm25: nDCG@10 +0.1200 (p = " in text and "3 better, 1 worse, 1 tied" in text


def test_the_report_carries_candidates_tests_and_every_query(outcome: EvalOutcome, queries: dict[str, str]) -> None:
    from crossrank.evaluate.report import render_html

    results = outcome.payload  # what results.json holds (a later test writes another run to the same place)
    assert set(results["candidates_per_query"]["bm25+ce"]) == set(queries)
    assert {(c["stage"], c["against"]) for c in results["comparisons"]} >= {("bm25+ce", "bm25"),
                                                                           ("hybrid+ce", "hybrid")}
    page = render_html(outcome.payload, outcome.runs, outcome.evaluations)
    assert "<h2>Paired tests</h2>" in page and "paired t-test over" in page
    assert f"Per query ({len(queries)} queries)" in page and all(f"<td>{q}</td>" in page for q in queries)


def test_cli_eval_says_when_fewer_candidates_were_reranked_than_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bert_dir: Path, model_cache: Path
) -> None:
    data = _words_dataset(tmp_path / "words")
    args = ["eval", "--data", str(data), "--stages", "bm25,bm25+ce", "--out", str(tmp_path / "out"),
            "--no-progress", "--model", str(bert_dir), "--cache-dir", str(model_cache), "--top-n", "50"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "note: bm25+ce reranked 1 candidates per query on average (1-1), not the 50 asked for" in printed
    assert "bm25+ce vs bm25: nDCG@10" in printed and "paired t-test over 3 queries" in printed
