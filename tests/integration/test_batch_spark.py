"""Batch reranking on Spark in ``local[2]`` (3 tries per task): equal to the single-process
``rerank-run``; a Python worker killed mid-job is retried by Spark; a bad row is reported with
its ids and loses nothing else; ``predict_batch_udf`` gives the library's scores."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batch_inputs import CrashOnce, assert_same_run, crash_marker, restore, spec_of
from crossrank import Reranker
from crossrank.batch.run import Job

pytest.importorskip("pyspark", reason="crossrank[spark] is not installed")
pd = pytest.importorskip("pandas")
if shutil.which("java") is None:
    pytest.skip("no Java runtime (`make test` installs Debian's openjdk-17-jre-headless)",
                allow_module_level=True)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from huggingface_hub import constants

    from crossrank.batch.spark import session

    # Python workers take this environment: the test's own scorers must import there, and the
    # CLI's default model cache is a temporary one, the same for the driver and the workers
    home, saved = str(tmp_path_factory.mktemp("hf-home")), constants.HF_HOME
    saved_env = {k: os.environ.get(k) for k in ("HF_HOME", "PYTHONPATH", "PYSPARK_PYTHON")}
    os.environ["HF_HOME"] = constants.HF_HOME = home
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), *sys.path])
    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = session(None, 2)
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        spark.stop()
        constants.HF_HOME = saved
        restore(saved_env)


def test_equals_single_process(spark: Any, inputs: tuple[Path, Path, Path], reference: Path, bert_dir: Path,
                               model_cache: Path, tmp_path: Path) -> None:
    from crossrank.batch.spark import rerank_run_spark

    out = tmp_path / "spark.trec"
    report = rerank_run_spark(Job(*inputs, out, top_n=8, keep_rest=True, tag="ce"), spec_of(bert_dir, model_cache),
                              spark=spark, workers=2)
    assert report.reranked == 12 and report.pairs == 12 * 7 and not report.failures
    assert_same_run(out, reference)


def test_worker_killed_mid_job_is_retried(spark: Any, inputs: tuple[Path, Path, Path], reference: Path,
                                          bert_dir: Path, model_cache: Path, tmp_path: Path) -> None:
    from crossrank.batch.spark import rerank_run_spark

    spec = spec_of(bert_dir, model_cache)
    crash_marker(spec).unlink(missing_ok=True)
    out = tmp_path / "spark.trec"
    report = rerank_run_spark(Job(*inputs, out, top_n=8, keep_rest=True, tag="ce"), spec, spark=spark, workers=2,
                              scorer=CrashOnce)
    assert crash_marker(spec).exists(), "no worker was killed"
    assert report.reranked == 12 and not report.failures
    assert_same_run(out, reference)


def test_bad_rows_are_named_and_the_rest_scored(spark: Any, bert_dir: Path, model_cache: Path,
                                                bert_reranker: Reranker) -> None:
    from crossrank.batch.spark import score_frame

    rows = spark.createDataFrame(
        [("q1", "a", "one query", "fine text"), ("q1", "b", "one query", None), ("q2", "c", "", "text"),
         ("q2", "d", "two", "more fine text")], "qid string, docid string, query string, text string")
    scored = score_frame(rows, spec_of(bert_dir, model_cache)).toPandas().set_index("docid")
    assert "qid q1, docid b" in scored.loc["b", "error"] and "missing" in scored.loc["b", "error"]
    assert "docid c" in scored.loc["c", "error"] and "empty" in scored.loc["c", "error"]
    assert pd.isna(scored.loc["b", "score"]) and pd.isna(scored.loc["c", "score"])
    expected = bert_reranker.score_pairs([("one query", "fine text"), ("two", "more fine text")])
    assert scored.loc[["a", "d"], "score"].to_numpy() == pytest.approx(expected, abs=1e-6)
    assert pd.isna(scored.loc["a", "error"]) and pd.isna(scored.loc["d", "error"])


def test_predict_batch_udf_gives_the_library_scores(spark: Any, bert_dir: Path, model_cache: Path,
                                                    bert_reranker: Reranker) -> None:
    from pyspark.sql.functions import col

    from crossrank.batch.spark import score_udf

    pairs = [("a query", f"document number {i}") for i in range(20)]
    frame = spark.createDataFrame(pairs, "query string, text string").repartition(2)
    rerank = score_udf(spec_of(bert_dir, model_cache), batch_rows=8)
    got = frame.withColumn("score", rerank(col("query"), col("text"))).toPandas()
    expected = dict(zip((t for _, t in pairs), bert_reranker.score_pairs(pairs)))
    assert got["score"].to_numpy() == pytest.approx([expected[t] for t in got["text"]], abs=1e-6)


def test_cli_engine_spark(inputs: tuple[Path, Path, Path], reference: Path, bert_dir: Path, spark: Any,
                          tmp_path: Path, model_cache: Path) -> None:
    """The CLI path, in this process: the session the fixture made is the one getOrCreate returns."""
    from crossrank.cli import main

    run, corpus, queries = inputs
    out = tmp_path / "spark.trec"
    code = main(["rerank-run", "--run", str(run), "--corpus", str(corpus), "--queries", str(queries), "--top-n", "8",
                 "--keep-rest", "--model", str(bert_dir), "--batch-size", "4", "--tag", "ce", "--no-progress",
                 "--out", str(out), "--engine", "spark", "--workers", "2"])
    assert code == 0
    assert_same_run(out, reference)
