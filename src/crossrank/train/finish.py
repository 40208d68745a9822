"""The trained model as a directory crossrank serves: Hugging Face layout, ``onnx/model.onnx``, model card.

The model is written to ``OUT/.model.partial``, exported to ONNX with crossrank's own export
(the same one ``Reranker`` uses for any model that ships only weights), checked by loading it
with :class:`crossrank.Reranker` and comparing its scores with the trained weights', and only
then renamed to ``OUT/model``: a crash leaves either the previous model or none, never half of one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.train.card import model_card
from crossrank.train.data import TrainingData

log = logging.getLogger(__name__)

ONNX_FILE = "onnx/model.onnx"
SUMMARY_FILE = "training.json"


def _sample_pairs(data: TrainingData, count: int = 8) -> list[tuple[str, str]]:
    pairs = []
    for qid, judged in data.train.items():
        for doc in judged:
            pairs.append((data.queries[qid], data.texts[doc]))
            if len(pairs) >= count:
                return pairs
    return pairs


def finish_model(model: Any, out: Path, summary: dict[str, Any], data: TrainingData, *,
                 cache_dir: Path | None = None) -> Path:
    from crossrank.models.load import load_model
    from crossrank.rerank import Reranker

    staging = out / ".model.partial"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    for extra in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"):
        (staging / extra).unlink(missing_ok=True)  # a plain sequence-classification directory
    loaded = load_model(staging, task="sequence-classification", cache_dir=cache_dir)
    (staging / "onnx").mkdir(exist_ok=True)
    shutil.copy(loaded.onnx_path, staging / ONNX_FILE)
    pairs = _sample_pairs(data)
    reranker = Reranker(staging, cache_dir=cache_dir)
    onnx_scores = np.concatenate([reranker.score(q, [d]) for q, d in pairs])
    torch_scores = np.asarray(model.predict(pairs, show_progress_bar=False), dtype=np.float64)
    summary["onnx_max_abs_diff"] = float(np.max(np.abs(onnx_scores - torch_scores)))
    if summary["onnx_max_abs_diff"] > 1e-3:
        log.warning("the ONNX export scores differ from the trained weights by up to %.2g", summary["onnx_max_abs_diff"])
    summary = {k: v for k, v in summary.items() if k != "model"}
    (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (staging / "README.md").write_text(model_card(summary), encoding="utf-8")
    target = out / "model"
    old = out / ".model.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    return target
