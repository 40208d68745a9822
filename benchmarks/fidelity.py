"""Score fidelity of each mode on a cross-encoder whose BERT body is trained.

The model is ms-marco-MiniLM-L6-v2-shaped with the trained all-MiniLM-L6-v2 encoder as its
body and a random classification head (a fully random model scores every document nearly
alike, so rankings on it mean nothing). For 100 titles and 100 passages it reports:

* exact mode vs ``transformers`` (fp32 torch): max abs logit difference;
* fast mode (and ONNX Runtime dynamic int8, what FlashRank ships) vs exact: top-10 overlap,
  Spearman rank correlation, max abs logit difference.

Usage: python benchmarks/fidelity.py [--out benchmarks/results/fidelity.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def top10(a: np.ndarray, b: np.ndarray) -> int:
    return len(set(np.argsort(-a)[:10].tolist()) & set(np.argsort(-b)[:10].tolist()))


def transformers_logits(directory: Path, pairs: list[tuple[str, str]], max_length: int) -> np.ndarray:
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(directory))
    # fp32 whatever the checkpoint stores: the reference of the exact mode
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(directory)).float().eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(pairs), 16):
            chunk = pairs[start : start + 16]
            batch = tok([q for q, _ in chunk], [d for _, d in chunk], padding=True, truncation="only_second",
                        max_length=max_length, return_tensors="pt")
            out.append(model(**batch).logits[:, 0].double().numpy())
    return np.concatenate(out)


def int8_logits(onnx_path: Path, reranker: object, pairs: list[tuple[str, str]], work: Path) -> np.ndarray:
    """ONNX Runtime dynamic int8 quantization of the same graph (FlashRank's recipe)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from crossrank.runtime.onnx import OnnxRuntime

    target = work / "model-int8.onnx"
    if not target.is_file():
        logging.disable(logging.WARNING)  # the quantizer's advice about pre-processing
        quantize_dynamic(str(onnx_path), str(target), weight_type=QuantType.QInt8)
    runtime = OnnxRuntime(target)
    original = reranker.runtime  # type: ignore[attr-defined]
    reranker.runtime = runtime  # type: ignore[attr-defined]
    try:
        rows = reranker.tokenize(pairs)  # type: ignore[attr-defined]
        return reranker.infer(rows)  # type: ignore[attr-defined, no-any-return]
    finally:
        reranker.runtime = original  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/fidelity.json")
    parser.add_argument("--seeds", type=int, default=3, help="workloads (queries) per kind")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu",
        help="cuda: the fast mode runs fp16 on the GPU (PyTorch); the reference stays fp32 on the CPU",
    )
    args = parser.parse_args(argv)

    from crossrank import Reranker
    from crossrank.bench.inputs import make_workload
    from crossrank.models.load import load_model
    from crossrank.models.synthetic import build_random_model, trained_minilm_dir

    work = Path(tempfile.mkdtemp(prefix="crossrank-fidelity-"))
    directory = build_random_model(work / "trained-body", body_from=trained_minilm_dir(), layers=6)
    exact = Reranker(directory, mode="exact", cache_dir=work / "cache")
    full_graph = load_model(directory, task="sequence-classification", cache_dir=work / "cache").onnx_path
    fast = Reranker(directory, mode="fast", cache_dir=work / "cache", providers=["cuda"] if args.device == "cuda" else None)
    results: dict[str, object] = {"fast_runtime": f"{fast.choice.runtime}-{fast.choice.precision}-{fast.choice.device}"}
    print(f"fast mode: {results['fast_runtime']}")
    lines = [
        "| workload (100 docs) | exact vs transformers: max abs diff | fast vs exact: top-10 / Spearman / max diff "
        "| ORT int8 vs exact: top-10 / Spearman |",
        "|---|---|---|---|",
    ]
    for kind in ("titles", "passages"):
        rows = []
        for seed in range(args.seeds):
            print(f"fidelity: {kind}, query {seed + 1}/{args.seeds}", file=sys.stderr, flush=True)
            w = make_workload(kind, 100, seed=100 + seed)
            ref = exact.score(w.query, w.documents, activation="none")
            hf = transformers_logits(directory, w.pairs, exact.max_length)
            f = fast.score(w.query, w.documents, activation="none")
            q = int8_logits(full_graph, exact, w.pairs, work)
            rows.append({
                "exact_vs_transformers_max_abs": float(np.abs(ref - hf).max()),
                "fast_top10": top10(f, ref), "fast_spearman": spearman(f, ref),
                "fast_max_abs": float(np.abs(f - ref).max()),
                "int8_top10": top10(q, ref), "int8_spearman": spearman(q, ref),
                "logit_std": float(ref.std()),
            })
        results[kind] = rows
        worst = {
            "ex": max(r["exact_vs_transformers_max_abs"] for r in rows),
            "ft": min(r["fast_top10"] for r in rows), "fs": min(r["fast_spearman"] for r in rows),
            "fd": max(r["fast_max_abs"] for r in rows),
            "qt": min(r["int8_top10"] for r in rows), "qs": min(r["int8_spearman"] for r in rows),
        }
        lines.append(
            f"| {kind} (worst of {args.seeds} queries) | {worst['ex']:.1e} | {worst['ft']}/10 / {worst['fs']:.4f} / "
            f"{worst['fd']:.1e} | {worst['qt']}/10 / {worst['qs']:.4f} |"
        )
    print("\n".join(lines))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
