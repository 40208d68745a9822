"""Fine-tune the all-MiniLM-L6-v2 body as a cross-encoder and measure what it buys on held-out queries.

The corpus is real technical English this machine has without a download: the docstrings of
installed Python packages (numpy, torch, transformers, ...), read with ``ast`` (nothing is
imported). Each docstring is cut in two: its summary line is a query, the rest of it (the
description and parameters) is the one relevant document. Every other docstring body is in
the corpus too, as distractors. This is a known-item search task in a domain the MS MARCO
rerankers never saw, written as a BEIR-format directory (train/dev/test splits, disjoint
queries). No ready-made IR dataset ships on PyPI (the BEIR and ir_datasets packages download
theirs at run time), hence the generated one.

Reports nDCG@10 on the test queries of bm25, bm25 + the base (the body with its new, untrained
head, exactly as training starts from it) and bm25 + the fine-tuned model, both through
crossrank's ONNX Runtime path; training time and pairs/s.

Usage: python benchmarks/train_lift.py [--train 240 --dev 40 --test 100 --epochs 2]  (about 10 minutes on 2 busy cores)
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = ("numpy", "torch", "transformers", "sentence_transformers", "datasets", "pandas", "tokenizers",
            "huggingface_hub", "onnx", "accelerate", "pyarrow", "matplotlib", "fastapi", "pydantic")
RESULTS = Path(__file__).parent / "results"


def _docstrings(package_dir: Path) -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        if "test" in path.parts[-2] or path.name.startswith("test"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                text = ast.get_docstring(node)
                if text:
                    found.append((f"{path.relative_to(package_dir.parent)}:{node.lineno}", node.name, text))
    return found


def _split(text: str) -> tuple[str, str] | None:
    summary, _, body = text.strip().partition("\n\n")
    summary = " ".join(summary.split())
    body = " ".join(re.sub(r"[-=]{3,}", " ", body).split())
    if not (4 <= len(summary.split()) <= 25) or len(body.split()) < 15 or ">>>" in summary:
        return None
    return summary, " ".join(body.split()[:120])


def write_dataset(target: Path, *, train: int, dev: int, test: int, seed: int) -> dict[str, int]:
    import importlib.util

    rows: list[tuple[str, str, str]] = []
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec and spec.submodule_search_locations:
            rows.extend(_docstrings(Path(list(spec.submodule_search_locations)[0])))
    seen_summary: set[str] = set()
    seen_body: set[str] = set()
    pairs = []
    for where, name, text in rows:
        split = _split(text)
        if split is None or split[0].lower() in seen_summary or split[1] in seen_body:
            continue
        seen_summary.add(split[0].lower())
        seen_body.add(split[1])
        pairs.append((where, name, *split))
    rng = random.Random(seed)
    rng.shuffle(pairs)
    wanted = train + dev + test
    if len(pairs) < wanted:
        sys.exit(f"only {len(pairs)} usable docstrings for {wanted} queries")
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    with open(target / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for i, (where, name, _, body) in enumerate(pairs):
            handle.write(json.dumps({"_id": f"d{i}", "title": name, "text": body, "metadata": {"source": where}}) + "\n")
    with open(target / "queries.jsonl", "w", encoding="utf-8") as handle:
        for i, (_, _, summary, _) in enumerate(pairs[:wanted]):
            handle.write(json.dumps({"_id": f"q{i}", "text": summary}) + "\n")
    bounds = {"train": (0, train), "dev": (train, train + dev), "test": (train + dev, wanted)}
    for split, (lo, hi) in bounds.items():
        (target / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(lo, hi)))
    return {"documents": len(pairs), "train": train, "dev": dev, "test": test}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=240)
    parser.add_argument("--dev", type=int, default=40)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--negatives", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--top-n", type=int, default=20, help="candidates reranked (dev and test)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=RESULTS / "train_lift.json")
    args = parser.parse_args()

    from crossrank import Reranker
    from crossrank.evaluate.runner import EvalConfig, run_evaluation
    from crossrank.models.synthetic import trained_minilm_dir
    from crossrank.train import TrainConfig, train

    work = args.work or Path(tempfile.mkdtemp(prefix="crossrank-train-bench-"))
    data = work / "docstrings"
    shutil.rmtree(work / "ft", ignore_errors=True)
    started = time.perf_counter()
    sizes = write_dataset(data, train=args.train, dev=args.dev, test=args.test, seed=args.seed)
    print(f"dataset: {sizes} in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    result = train(TrainConfig(
        data=str(data), base=str(trained_minilm_dir()), out=work / "ft", epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, negatives=args.negatives, max_length=args.max_length, dev_top_n=args.top_n,
        dev_depth=100, seed=args.seed, cache_dir=work / "cache",
    ))
    summary = result.summary
    # the base as training started from it: the body with the same seeded new head
    from sentence_transformers.cross_encoder import CrossEncoder
    from transformers import set_seed

    set_seed(args.seed)
    base_dir = work / "base-with-head"
    CrossEncoder(str(work / "ft" / "base"), num_labels=1, max_length=args.max_length).save_pretrained(str(base_dir))
    for extra in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"):
        (base_dir / extra).unlink(missing_ok=True)
    rerankers = {name: Reranker(path, cache_dir=work / "cache", max_length=args.max_length)
                 for name, path in (("base", base_dir), ("trained", result.model_dir))}
    outcome = run_evaluation(EvalConfig(str(data), work / "eval", split="test", depth=100, top_n=args.top_n),
                             rerankers=rerankers)
    rows = {row["stage"]: row["metrics"] for row in outcome.rows}
    report = {
        "dataset": {"name": "python-docstrings (generated)", **sizes},
        "base": "sentence-transformers/all-MiniLM-L6-v2 body + new head",
        "test_ndcg@10": {stage: metrics["nDCG@10"] for stage, metrics in rows.items()},
        "test_recall@100_bm25": rows["bm25"]["Recall@100"],
        "dev_ndcg@10": {"before": summary["dev_ndcg@10_before"], "after": summary["dev_ndcg@10_after"],
                        "per_epoch": summary["dev_per_epoch"]},
        "training": {k: summary[k] for k in ("device", "global_step", "epochs_run", "train_seconds_this_session",
                                             "pairs_per_second", "onnx_max_abs_diff")},
        "mining": summary["mining"],
        "settings": vars(args) | {"work": str(work), "out": str(args.out)},
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
