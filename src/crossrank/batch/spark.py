"""Batch reranking on Spark: ``predict_batch_udf`` (Spark 3.4+) or ``mapInPandas`` over a
DataFrame with ``query`` and ``text`` columns.

>>> from pyspark.sql.functions import col  # doctest: +SKIP
>>> rerank = score_udf(RerankerSpec("cross-encoder/ms-marco-MiniLM-L6-v2"))  # doctest: +SKIP
>>> df.withColumn("score", rerank(col("query"), col("text")))  # doctest: +SKIP

``predict_batch_udf`` caches the model per Python worker (its ``make_predict_fn`` runs once per
worker process); :func:`score_frame` (``mapInPandas``) loads it once per partition, and works
on every Spark version with pandas UDFs. A failed task is retried by Spark
(``spark.task.maxFailures``; on a local master give it as ``local[N,RETRIES]``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crossrank.batch.run import Job, run_on_engine
from crossrank.batch.scorer import PairScorer, RerankerSpec
from crossrank.evaluate.rerank_run import RerankRunReport
from crossrank.extras import require

if TYPE_CHECKING:
    import pandas as pd

#: the answer's columns besides the ids carried through
SCORE_SCHEMA = "score double, error string"


def _pyspark() -> Any:
    return require("pyspark", "spark", "Reranking on Spark")


def score_udf(spec: RerankerSpec, *, batch_rows: int = 256) -> Any:
    """A ``predict_batch_udf`` (query, text) -> score; a bad row scores NaN (see :func:`score_frame`
    for the rows' errors)."""
    functions = require("pyspark.ml.functions", "spark", "Reranking on Spark")
    types = require("pyspark.sql.types", "spark", "Reranking on Spark")

    def make_predict_fn() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        scorer = PairScorer(spec)

        def predict(queries: np.ndarray, texts: np.ndarray) -> np.ndarray:
            scores, _ = scorer.score_arrays(list(queries), list(texts))
            return scores

        return predict

    return functions.predict_batch_udf(make_predict_fn, return_type=types.DoubleType(), batch_size=batch_rows)


def score_frame(frame: Any, spec: RerankerSpec, *, keep: tuple[str, ...] = (),
                scorer: type[PairScorer] = PairScorer) -> Any:
    """``mapInPandas``: the frame's id columns (``qid``, ``docid``, ``id``) and ``keep`` columns
    with ``score`` and ``error`` (the row's ids and what is wrong with it, else null)."""
    from crossrank.batch.scorer import ID_COLUMNS

    fields = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
    carried = [c for c in (*ID_COLUMNS, *keep) if c in fields]
    schema = ", ".join([*(f"{c} {fields[c]}" for c in carried), SCORE_SCHEMA])
    return frame.mapInPandas(scorer(spec, keep=keep).map_partitions, schema)


def session(master: str | None, workers: int) -> Any:
    """A Spark session on ``master`` (default ``local[workers,3]``: 3 tries per task), small shuffles."""
    sql = require("pyspark.sql", "spark", "Reranking on Spark")
    return (
        sql.SparkSession.builder.master(master or f"local[{workers},3]")
        .appName("crossrank-rerank-run")
        .config("spark.sql.shuffle.partitions", str(max(2, workers)))
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )


def rerank_run_spark(
    job: Job, spec: RerankerSpec, *, master: str | None = None, workers: int = 2, spark: Any = None,
    partitions: int | None = None, scorer: type[PairScorer] = PairScorer,
) -> RerankRunReport:
    """``rerank-run`` with the pairs scored by Spark; the same output as the single-process path."""
    _pyspark()
    name = spec.prepare()  # the export, once, before the executors start
    sql = require("pyspark.sql", "spark", "Reranking on Spark")
    spark = spark or sql.SparkSession.getActiveSession()
    own = spark is None  # a session this call makes, it stops; one it was given or found, it leaves
    spark = spark or session(master, workers)
    try:
        def score_parts(parts: list[Path]) -> Iterator[pd.DataFrame]:
            frame = spark.read.parquet(*(str(p) for p in parts))
            frame = frame.repartition(partitions or max(len(parts), 4 * workers))
            yield score_frame(frame, spec, keep=("pos",), scorer=scorer).select("qid", "pos", "score", "error").toPandas()

        return run_on_engine(job, name, score_parts)
    finally:
        if own:
            spark.stop()
