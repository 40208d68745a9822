"""Golden scores: one tiny random-weight model per supported scoring head, on fixed pairs.

Each model is built from fixed seeds (:mod:`crossrank.models.synthetic`), so the same
torch/transformers give the same weights and crossrank's exact mode the same logits. The
expected logits live in ``tests/golden/scores.json``; ``tests/unit/test_golden.py`` compares.
The builds match the session fixtures of the other tests, so their ONNX exports are shared.

Regenerate only on purpose (a deliberate change of what a head scores, or of the builders),
and say why in the commit::

    PYTHONPATH=src python -m tests.golden_models --update   # rewrite scores.json
    PYTHONPATH=src python -m tests.golden_models            # compare, and check two builds agree
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossrank import Reranker
from crossrank.models.synthetic import (
    build_llm_reranker,
    build_qwen3_reranker,
    build_random_model,
    build_st_cross_encoder,
)

GOLDEN = Path(__file__).parent / "golden" / "scores.json"
TOLERANCE = 1e-4  # absolute and relative, on raw logits

QUERY = "waterproof boots for hiking"
DOCUMENTS = [
    "Leather hiking boots keep your feet dry on long walks in wet weather.",
    "Crocs Kids' Baya Clog",
    "naïve café 東京 — Straße 🙂",
    "rain " * 300,  # cut to max_length
]


@dataclass(frozen=True)
class GoldenModel:
    """How to build one model (into a fresh directory) and load it."""

    build: Callable[[Path], Path]
    options: dict[str, Any] = field(default_factory=dict)


MODELS: dict[str, GoldenModel] = {
    # *ForSequenceClassification: the classifier's logit(s)
    "bert": GoldenModel(lambda d: build_random_model(d, layers=2, initializer_range=0.2)),
    "bert-two-labels": GoldenModel(lambda d: build_random_model(d, layers=1, num_labels=2, initializer_range=0.2)),
    "xlm-roberta": GoldenModel(
        lambda d: build_random_model(d, architecture="xlm-roberta", layers=2, initializer_range=0.2)),
    "modernbert-cls": GoldenModel(lambda d: build_random_model(
        d, architecture="modernbert", layers=2, classifier_pooling="cls", initializer_range=0.2)),
    "modernbert-mean": GoldenModel(lambda d: build_random_model(
        d, architecture="modernbert", layers=2, classifier_pooling="mean", initializer_range=0.2)),
    # sentence-transformers module stack (Ettin style)
    "st-modules-ettin": GoldenModel(lambda d: build_st_cross_encoder(d / "ettin", layers=2, initializer_range=0.2)),
    # LLM yes/no heads: the last token's logit(yes) - logit(no), or one token's logit
    "qwen3-reranker": GoldenModel(lambda d: build_qwen3_reranker(d, initializer_range=0.2)),
    "mxbai-rerank-v2": GoldenModel(
        lambda d: build_llm_reranker(d, "mxbai-rerank-v2", body="qwen2", initializer_range=0.2),
        {"template": "mxbai-rerank-v2"}),
    "bge-reranker-v2-gemma": GoldenModel(
        lambda d: build_llm_reranker(d, "bge-reranker-v2-gemma", body="gemma", initializer_range=0.4),
        {"template": "bge-reranker-v2-gemma"}),
}


def build(name: str, directory: Path) -> Path:
    """Build golden model ``name`` under ``directory`` (which may not exist yet); its model directory."""
    directory.mkdir(parents=True, exist_ok=True)
    return MODELS[name].build(directory)


def logits(name: str, model_dir: Path, cache_dir: Path) -> list[float]:
    """Exact-mode raw logits of golden model ``name`` on the fixed pairs."""
    reranker = Reranker(model_dir, cache_dir=cache_dir, mode="exact", **MODELS[name].options)
    return [float(x) for x in reranker.score(QUERY, DOCUMENTS, activation="none")]


def read_golden(path: Path = GOLDEN) -> dict[str, list[float]]:
    data = json.loads(path.read_text())
    if data["query"] != QUERY or data["documents"] != DOCUMENTS:
        raise SystemExit(f"{path} was made for other pairs; regenerate it (see {__name__})")
    scores: dict[str, list[float]] = data["logits"]
    return scores


def compare(expected: list[float], got: list[float]) -> str | None:
    """None when ``got`` matches ``expected`` within :data:`TOLERANCE`, else what differs."""
    if np.allclose(got, expected, rtol=TOLERANCE, atol=TOLERANCE):
        return None
    rows = [f"  pair {i}: golden {e:+.6f}  now {g:+.6f}" + ("" if np.isclose(g, e, rtol=TOLERANCE, atol=TOLERANCE)
                                                           else "  <- differs")
            for i, (e, g) in enumerate(zip(expected, got))]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden_models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help=f"rewrite {GOLDEN.name} from fresh builds")
    args = parser.parse_args(argv)
    found: dict[str, list[float]] = {}
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp), Path(tmp) / "cache"
        for name in MODELS:
            first = logits(name, build(name, root / name / "a"), cache)
            second = logits(name, build(name, root / name / "b"), cache)
            if first != second:  # two builds from the same seeds must agree exactly
                print(f"{name}: NOT DETERMINISTIC\n{compare(first, second) or '  (tiny differences)'}")
                failures += 1
            found[name] = first
            print(f"{name}: {' '.join(f'{x:+.5f}' for x in first)}", file=sys.stderr)
    if args.update:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps({"query": QUERY, "documents": DOCUMENTS, "logits": found}, indent=2,
                                     ensure_ascii=False) + "\n")
        print(f"wrote {GOLDEN}", file=sys.stderr)
        return 1 if failures else 0
    golden = read_golden()
    for name, got in found.items():
        problem = "not in the golden file" if name not in golden else compare(golden[name], got)
        if problem:
            print(f"{name}: differs from {GOLDEN.name}\n{problem}")
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
