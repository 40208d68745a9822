"""nDCG@10 of first stage + the model in training on the dev queries, through ``crossrank eval``'s code.

:class:`DevEvaluator` is a sentence-transformers evaluator: the trainer calls it after each
epoch, logs ``eval_dev_ndcg@10``, keeps the best checkpoint by it and stops early on it. It
reranks the dev queries' first-stage top N with :func:`crossrank.evaluate.stages.run_stages`
and scores them with :func:`crossrank.evaluate.metrics.evaluate`, exactly as ``crossrank eval``
does, so the dev figure and a later ``crossrank eval`` of the saved model measure the same thing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from crossrank.evaluate.metrics import evaluate
from crossrank.evaluate.stages import RERANK_SUFFIX, run_stages
from crossrank.retrieval.base import Retriever
from crossrank.train.data import Qrels

log = logging.getLogger(__name__)

METRIC = "ndcg@10"
NAME = "dev"
BEST_METRIC = f"eval_{NAME}_{METRIC}"  #: the name the trainer logs and selects the best checkpoint by


class TorchScorer:
    """A sentence-transformers CrossEncoder as a crossrank stage scorer (sigmoid scores, no progress bar)."""

    def __init__(self, model: Any, name: str = "model in training", batch_size: int = 32) -> None:
        self.model = model
        self.name = name
        self.batch_size = batch_size

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        if not documents:
            return np.zeros(0)
        scores = self.model.predict([(query, d) for d in documents], batch_size=self.batch_size,
                                    show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(scores, dtype=np.float64).reshape(-1)

    __call__ = score


def _base_evaluator() -> type:
    from sentence_transformers.base.evaluation import BaseEvaluator

    return BaseEvaluator


class DevEvaluator(_base_evaluator()):  # type: ignore[misc]
    """nDCG@10 of ``first_stage`` + the model on the dev qrels (see the module docstring)."""

    def __init__(self, retriever: Retriever, queries: dict[str, str], qrels: Qrels, *, depth: int = 100,
                 top_n: int = 100, batch_size: int = 32) -> None:
        super().__init__()
        self.retriever = retriever
        self.queries = {q: queries[q] for q in qrels}
        self.qrels = qrels
        self.depth, self.top_n, self.batch_size = depth, top_n, batch_size
        self.primary_metric = METRIC
        self.history: list[float] = []

    def ndcg(self, model: Any) -> float:
        stage = self.retriever.name + RERANK_SUFFIX
        runs = run_stages([stage], {self.retriever.name: self.retriever}, self.queries,
                          reranker=TorchScorer(model, batch_size=self.batch_size), depth=self.depth,
                          top_n=self.top_n, progress=False)
        if runs[stage].failures:
            log.warning("%d dev queries failed (counted as 0)", len(runs[stage].failures))
        return float(evaluate(self.qrels, runs[stage].ranked_ids()).mean["nDCG@10"])

    def __call__(self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        value = self.ndcg(model)
        self.history.append(value)
        log.info("dev nDCG@10 after epoch %s: %.4f", epoch, value)
        metrics: dict[str, float] = self.prefix_name_to_metrics({METRIC: value}, NAME)
        return metrics
