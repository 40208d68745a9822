"""Training examples: pointwise pairs with graded labels (BCE) or one list per query (listwise losses).

A pair's label is its grade divided by the highest grade in the train split, so graded qrels
stay graded (0, 0.5, 1 for grades 0..2) and binary ones are 0/1; a listwise example keeps the
grades themselves. Examples are written to a JSON-lines file once and read back on resume,
so a resumed run trains on exactly the data of the run it continues.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from crossrank.retrieval.base import Retriever
from crossrank.train.data import TrainingData
from crossrank.train.mine import mine_negatives

Example = dict[str, Any]


def build_examples(data: TrainingData, retriever: Retriever, model: Any, config: Any) -> tuple[list[Example], dict[str, Any]]:
    """Mine negatives and turn the judgements into examples for ``config.loss``; also what mining did."""
    scorer = None
    if config.false_negative_margin is not None:
        from crossrank.train.dev import TorchScorer

        scorer = TorchScorer(model, batch_size=max(config.batch_size, 32))
    mined = mine_negatives(data, retriever, per_query=config.negatives, depth=config.mine_depth, scorer=scorer,
                           margin=config.false_negative_margin or 0.0, progress=config.progress)
    top = data.max_grade
    examples: list[Example] = []
    for qid, judged in data.train.items():
        query = data.queries[qid]
        positives = [(data.texts[d], g) for d, g in judged.items() if g >= 1]
        negatives = [(text, 0) for text in mined.negatives[qid].values()]
        if config.loss == "bce":
            examples.extend({"query": query, "passage": t, "label": g / top} for t, g in positives + negatives)
        else:
            docs = positives + negatives
            examples.append({"query": query, "docs": [t for t, _ in docs], "labels": [float(g) for _, g in docs]})
    info = mined.summary(config.negatives, retriever.name, config.mine_depth, config.false_negative_margin)
    info["pairs"] = sum(len(e["docs"]) if "docs" in e else 1 for e in examples)
    info["examples"] = len(examples)
    return examples, info


def write_examples(path: Path, examples: list[Example]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in examples)
    os.replace(tmp, path)


def read_examples(path: Path) -> list[Example]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def to_dataset(examples: list[Example]) -> Any:
    from datasets import Dataset

    columns = list(examples[0])
    return Dataset.from_dict({c: [e[c] for e in examples] for c in columns})
