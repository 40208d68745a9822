"""What each speed lever is worth: one variable changed at a time, on 100 titles / passages.

Every variant scores the same pre-generated requests (a new query and new documents each
round, so that runtimes which specialise on input shapes meet new shapes as in production),
interleaved round by round. Tokenization is included in every variant.

Usage: python benchmarks/levers.py [--rounds 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


class _Session:
    """A bare ONNX Runtime session with the library's options except how idle workers wait.

    ``spin``: False never spins; an int bounds the spin to that many microseconds.
    """

    def __init__(self, onnx: Path, threads: int, *, spin: bool | int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin is not False else "0")
        if spin is not True and spin is not False:
            options.add_session_config_entry("session.intra_op.spin_duration_us", str(spin))
        self.session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.session.run(None, feed)[0])


def _nncf_int8(onnx: Path, exact: object, work: Path, threads: int) -> object | None:
    """OpenVINO static int8 of the graph, calibrated on generated pairs (needs ``nncf``)."""
    import importlib.util

    if importlib.util.find_spec("nncf") is None:
        print("levers: nncf is not installed; skipping the static int8 variant", file=sys.stderr)
        return None
    import nncf
    import openvino

    from crossrank.bench.inputs import make_workload
    from crossrank.runtime.openvino import OpenVinoRuntime
    from crossrank.tokenize import pad_batch

    calibration = []
    for seed in range(20):
        for kind in ("titles", "passages"):
            rows = exact.tokenize(make_workload(kind, 8, seed=5000 + seed).pairs)  # type: ignore[attr-defined]
            calibration.append(pad_batch(rows, np.arange(8), exact.tokenizer.pad_id))  # type: ignore[attr-defined]
    quantized = nncf.quantize(
        openvino.Core().read_model(str(onnx)), nncf.Dataset(calibration),
        model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration),
    )
    path = work / "int8" / "model.xml"
    openvino.save_model(quantized, str(path))
    return OpenVinoRuntime(path, precision="bf16", threads=threads, pad_id=exact.tokenizer.pad_id, max_width=512)  # type: ignore[attr-defined, no-any-return, unused-ignore]


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model directory (default: the bench's random ms-marco-MiniLM-L6-v2 shape)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/levers.json")
    args = parser.parse_args(argv)

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from crossrank import Reranker
    from crossrank.bench import default_bench_model
    from crossrank.bench.inputs import make_workload
    from crossrank.models.load import load_model
    from crossrank.runtime.onnx import TOKENS_PER_THREAD, OnnxRuntime
    from crossrank.runtime.openvino import LENGTH_STEP, OpenVinoRuntime, plan_power_of_two
    from crossrank.runtime.openvino import TOKENS_PER_THREAD as OV_TOKENS_PER_THREAD
    from crossrank.runtime.torch import TorchRuntime
    from crossrank.scores import relevance_logit
    from crossrank.tokenize import pad_batch, plan_batches

    model = args.model or str(default_bench_model())
    exact = Reranker(model, mode="exact", threads=args.threads)
    loaded = load_model(model, task="sequence-classification")
    onnx, directory = loaded.onnx_path, loaded.files.directory  # the full graph, as exported
    first_token = exact.runtime.path  # the exact mode's graph: last layer cut to token 0
    work = Path(tempfile.mkdtemp(prefix="crossrank-levers-"))  # int8 and fused variants of the graph
    int8 = work / "model-int8.onnx"
    if not int8.is_file():
        logging.disable(logging.WARNING)
        quantize_dynamic(str(onnx), str(int8), weight_type=QuantType.QInt8)
        logging.disable(logging.NOTSET)
    fused = work / "model-fused.onnx"
    if not fused.is_file():
        from onnxruntime.transformers.optimizer import optimize_model

        config = json.loads((directory / "config.json").read_text())
        optimizer = optimize_model(
            str(onnx), model_type="bert", num_heads=config["num_attention_heads"], hidden_size=config["hidden_size"], opt_level=1
        )
        print(f"fusion: {optimizer.get_fused_operator_statistics()}", file=sys.stderr)
        optimizer.save_model_to_file(str(fused))
    pad = exact.tokenizer.pad_id
    ort_fp32 = OnnxRuntime(onnx, threads=args.threads)
    ort_first = exact.runtime
    ort_fused = OnnxRuntime(fused, threads=args.threads)
    ort_int8 = OnnxRuntime(int8, threads=args.threads)
    ov = {
        p: OpenVinoRuntime(onnx, precision=p, threads=args.threads, pad_id=pad, max_width=exact.max_length)
        for p in ("f32", "bf16")
    }
    ov_first = OpenVinoRuntime(first_token, precision="bf16", threads=args.threads, pad_id=pad, max_width=exact.max_length)
    ov_exact_len, ov_by_16 = (
        OpenVinoRuntime(onnx, precision="bf16", threads=args.threads, pad_id=pad, max_width=exact.max_length, round_width=fn)
        for fn in (lambda w: w, lambda w: w + (-w % LENGTH_STEP))
    )
    ort_sleeping = _Session(onnx, args.threads, spin=False)
    ort_bounded = _Session(onnx, args.threads, spin=200)
    torch_bf16 = TorchRuntime(directory, device="cpu", precision="bf16", threads=args.threads)
    ov_int8 = _nncf_int8(onnx, exact, work, args.threads)

    def variant(
        runtime: object, planner: Callable[[np.ndarray], list[np.ndarray]]
    ) -> Callable[[list[tuple[str, str]]], np.ndarray]:
        def score(pairs: list[tuple[str, str]]) -> np.ndarray:
            rows = exact.tokenize(pairs)
            out = np.empty(len(pairs))
            for batch in planner(rows.lengths):
                out[batch] = relevance_logit(runtime.run(pad_batch(rows, batch, pad)))  # type: ignore[attr-defined]
            return out

        return score

    def unsorted(size: int) -> Callable[[np.ndarray], list[np.ndarray]]:
        return lambda lengths: [np.arange(s, min(s + size, len(lengths))) for s in range(0, len(lengths), size)]

    variants: dict[str, Callable[[list[tuple[str, str]]], np.ndarray]] = {
        "ORT fp32, one padded batch of 100": variant(ort_fp32, unsorted(100)),
        "ORT fp32, batches of 32 in input order": variant(ort_fp32, unsorted(32)),
        "ORT fp32, length-sorted batches of 32 (sentence-transformers 6's plan; exact mode before the token budget)": variant(ort_fp32, lambda n: plan_batches(n, 32)),
        f"ORT fp32, length-sorted, at most {TOKENS_PER_THREAD} tokens per thread, ORT's default spinning": variant(ort_fp32, lambda n: ort_fp32.plan(n, 32)),
        "ORT fp32, same, last layer cut to the first token (exact mode)": variant(ort_first, lambda n: ort_fp32.plan(n, 32)),
        "ORT fp32, same batches, workers never spin": variant(ort_sleeping, lambda n: ort_fp32.plan(n, 32)),
        "ORT fp32, same batches, workers spin at most 200 µs": variant(ort_bounded, lambda n: ort_fp32.plan(n, 32)),
        "ORT fp32, length-sorted batches of 8": variant(ort_fp32, lambda n: plan_batches(n, 8)),
        "ORT fp32 + transformer fusion, sorted 32": variant(ort_fused, lambda n: plan_batches(n, 32)),
        "ORT dynamic int8, sorted 32 (reorders rankings)": variant(ort_int8, lambda n: plan_batches(n, 32)),
        "OpenVINO f32, sorted power-of-two batches, lengths rounded (steps 1-16)": variant(ov["f32"], lambda n: plan_power_of_two(n, 32)),
        "OpenVINO bf16, sorted 32, exact lengths (a new shape for most batches)": variant(ov_exact_len, lambda n: plan_batches(n, 32)),
        "OpenVINO bf16, power-of-two batches, lengths rounded up to a multiple of 16": variant(ov_by_16, lambda n: plan_power_of_two(n, 32)),
        "OpenVINO bf16, same, lengths rounded to within 1/8 (steps 1-16)": variant(ov["bf16"], lambda n: plan_power_of_two(n, 32)),
        "OpenVINO bf16, same, last layer cut to the first token": variant(ov_first, lambda n: plan_power_of_two(n, 32)),
        f"OpenVINO bf16, same, at most {OV_TOKENS_PER_THREAD} tokens per thread (fast mode)": variant(ov_first, lambda n: ov_first.plan(n, 32)),
        "OpenVINO bf16, power-of-two batches up to 64, rounded": variant(ov["bf16"], lambda n: plan_power_of_two(n, 64)),
        "PyTorch bf16 on the CPU (runtime='torch'), sorted 32": variant(torch_bf16, lambda n: plan_batches(n, 32)),
    }
    if ov_int8 is not None:
        variants["OpenVINO static int8 (NNCF, 40 calibration batches), power-of-two"] = variant(
            ov_int8, lambda n: plan_power_of_two(n, 32)
        )
    results: dict[str, dict[str, float]] = {}
    for kind in ("titles", "passages"):
        requests = [make_workload(kind, 100, seed=1000 + r).pairs for r in range(args.rounds + 1)]
        times: dict[str, list[float]] = {name: [] for name in variants}
        for fn in variants.values():
            fn(requests[0])  # warm-up
        for r in range(1, args.rounds + 1):
            print(f"levers: {kind} round {r}/{args.rounds}", file=sys.stderr, flush=True)
            for name, fn in variants.items():
                t0 = time.perf_counter()
                fn(requests[r])
                times[name].append(time.perf_counter() - t0)
        for name, ts in times.items():
            results.setdefault(name, {})[kind] = statistics.median(ts) * 1000
    base = "ORT fp32, batches of 32 in input order"
    print("| lever (100 docs, 2 threads, fresh inputs each round) | titles | passages | vs input-order batches of 32 |")
    print("|---|---|---|---|")
    for name, row in results.items():
        ratio = " / ".join(f"{results[base][k] / row[k]:.2f}×" for k in ("titles", "passages"))
        print(f"| {name} | {row['titles']:,.0f} ms | {row['passages']:,.0f} ms | {ratio} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    summary = {"model": model, "threads": args.threads, "rounds": args.rounds, "median_ms": results}
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
