"""Evaluation: IR metrics, BEIR datasets, TREC runs, stage runs and reports.

>>> from crossrank.evaluate import EvalConfig, run_evaluation  # doctest: +SKIP
>>> run_evaluation(EvalConfig("beir/scifact", Path("out")), reranker=Reranker(MODEL)).rows  # doctest: +SKIP

See docs/EVALUATION.md for the conventions (ties, queries without relevant documents).
"""

from crossrank.evaluate.beir import BeirDataset, resolve_dataset
from crossrank.evaluate.metrics import MEASURES, Evaluation, evaluate
from crossrank.evaluate.rerank_run import RerankRunReport, rerank_run
from crossrank.evaluate.runner import EvalConfig, EvalOutcome, run_evaluation
from crossrank.evaluate.stages import ALL_STAGES, StageRun, run_stages
from crossrank.evaluate.synthetic import SyntheticInfo, write_synthetic_beir
from crossrank.evaluate.trec import RunWriter, iter_run, read_run, read_trec_qrels, write_run

__all__ = [
    "ALL_STAGES",
    "MEASURES",
    "BeirDataset",
    "EvalConfig",
    "EvalOutcome",
    "Evaluation",
    "RerankRunReport",
    "RunWriter",
    "StageRun",
    "SyntheticInfo",
    "evaluate",
    "iter_run",
    "read_run",
    "read_trec_qrels",
    "rerank_run",
    "resolve_dataset",
    "run_evaluation",
    "run_stages",
    "write_run",
    "write_synthetic_beir",
]
