"""Batch reranking on data engines: a picklable pair scorer for Ray Data and Spark, and
``rerank-run`` on either engine (same output as the single-process path).

- :class:`~crossrank.batch.scorer.PairScorer`: pandas batch in (``query``, ``text`` and any id
  columns), pandas batch out (the ids, ``score``, ``error``); loads its model on first use.
- :mod:`crossrank.batch.ray_data`: ``ds.map_batches(PairScorer, ...)`` with a pool of actors.
- :mod:`crossrank.batch.spark`: ``predict_batch_udf`` and ``mapInPandas`` over a DataFrame.
"""

from crossrank.batch.scorer import PairScorer, RerankerSpec

__all__ = ["PairScorer", "RerankerSpec"]
