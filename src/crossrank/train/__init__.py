"""Fine-tune a cross-encoder on your own judgements, with hard negatives from crossrank's own index.

>>> from crossrank.train import TrainConfig, train  # doctest: +SKIP
>>> result = train(TrainConfig(data="my-beir-dir", base="cross-encoder/ms-marco-MiniLM-L6-v2", out=Path("ft")))  # doctest: +SKIP
>>> result.summary["dev_ndcg@10_before"], result.summary["dev_ndcg@10_after"]  # doctest: +SKIP

See docs/TRAINING.md. Needs ``pip install 'crossrank[train]'`` (sentence-transformers,
datasets, accelerate, torch).
"""

from crossrank.train.data import TrainingData, jsonl_to_beir, load_training_data
from crossrank.train.run import LOSSES, TrainConfig, TrainResult, train

__all__ = ["LOSSES", "TrainConfig", "TrainResult", "TrainingData", "jsonl_to_beir", "load_training_data", "train"]
