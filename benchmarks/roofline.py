"""How close each backend runs to this machine's matrix-multiply rate, and what the goals need.

A cross-encoder's work is almost all matrix products (``crossrank.bench.work`` counts them;
the count equals what ONNX Runtime multiplies, see tests/unit/test_bench_work.py). This script

1. measures the machine's matrix rate at the model's own shapes: the feed-forward pair
   (T x H by H x I, then T x I by I x H, T = ``--tokens``) in fp32, bf16 and int8 on every
   engine installed (ONNX Runtime, OpenVINO, PyTorch), 2 threads by default;
2. times sentence-transformers, FlashRank and crossrank's exact and fast modes on 100 titles
   and 100 passages (the bench's inputs, interleaved) and divides the useful work (the full
   model on real tokens, no padding) by each time;
3. gives each speed goal of the performance section its floor: crossrank's own work (the
   first-token cut) at the best matrix rate measured for the mode's precision, as if every
   operation, attention included, ran at that rate. A goal whose floor is above its target
   cannot be met on this machine by any scheduling of that precision.

Usage: python benchmarks/roofline.py [--threads 2] [--rounds 8] [--tokens 2048] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from crossrank.models.load import LoadedModel

#: the goals of docs/PERFORMANCE.md, as (mode, kind, speed-up over sentence-transformers)
GOALS = [("exact", "titles", 2.0), ("exact", "passages", 2.0), ("fast", "titles", 10.0), ("fast", "passages", 6.0)]
#: precisions as the backends' labels name them, e.g. "crossrank fast (bf16 OpenVINO)"
PRECISIONS = ("fp32", "bf16", "fp16", "int8")


def precision_of(label: str) -> str:
    """The precision a backend's label names (a fast mode that fell back to fp32 says so)."""
    return next((word for word in re.findall(r"[a-z0-9]+", label) if word in PRECISIONS), "?")


#: how far each precision's product may be from float64's (relative Frobenius norm): a rate
#: measured on a graph that computes something else would mean nothing
TOLERANCE = {"fp32": 1e-4, "bf16": 2e-2, "int8": 6e-2}


def _weights(hidden: int, inner: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((hidden, inner), dtype=np.float32) * 0.05
    w2 = rng.standard_normal((inner, hidden), dtype=np.float32) * 0.05
    return w1, w2


def _feed_forward_onnx(path: Path, hidden: int, inner: int, *, int8: bool) -> None:
    """X (T x hidden) @ W1 (hidden x inner) @ W2 (inner x hidden); with ``int8`` as Q/DQ pairs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1, w2 = _weights(hidden, inner)
    nodes, inits = [], []
    if not int8:
        inits += [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")]
        nodes += [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])]
    else:  # per-tensor activations, per-tensor weights: the pattern OpenVINO runs as int8
        for name, w, src, dst in (("1", w1, "x", "h"), ("2", w2, "h", "y")):
            scale = float(np.abs(w).max() / 127)
            inits += [
                numpy_helper.from_array(np.round(w / scale).astype(np.int8), f"w{name}_q"),
                numpy_helper.from_array(np.array(scale, dtype=np.float32), f"w{name}_s"),
                numpy_helper.from_array(np.array(0, dtype=np.int8), f"z{name}"),
                numpy_helper.from_array(np.array(0.05, dtype=np.float32), f"a{name}_s"),
            ]
            nodes += [
                helper.make_node("QuantizeLinear", [src, f"a{name}_s", f"z{name}"], [f"{src}_q"]),
                helper.make_node("DequantizeLinear", [f"{src}_q", f"a{name}_s", f"z{name}"], [f"{src}_dq"]),
                helper.make_node("DequantizeLinear", [f"w{name}_q", f"w{name}_s", f"z{name}"], [f"w{name}"]),
                helper.make_node("MatMul", [f"{src}_dq", f"w{name}"], [dst]),
            ]
    graph = helper.make_graph(
        nodes, "feed_forward",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["t", hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["t", hidden])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _first_output(result: Any) -> np.ndarray:
    """The product as float64, whatever the engine returned (a list, an OpenVINO result, an array)."""
    if isinstance(result, np.ndarray):
        return result.astype(np.float64)
    return np.asarray(result[0], dtype=np.float64)  # ONNX Runtime's list, OpenVINO's OVDict


def _run_ort(session: Any, x: np.ndarray) -> Any:
    return session.run(None, {"x": x})


def _engines(work: Path, hidden: int, inner: int, threads: int) -> dict[str, tuple[str, Callable[[np.ndarray], Any]]]:
    """name -> (precision, run(x)) for every engine and precision installed."""
    import importlib.util

    fp32, qdq = work / "ffn.onnx", work / "ffn-qdq.onnx"
    _feed_forward_onnx(fp32, hidden, inner, int8=False)
    _feed_forward_onnx(qdq, hidden, inner, int8=True)
    engines: dict[str, tuple[str, Callable[[np.ndarray], Any]]] = {}
    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic

        dynamic = work / "ffn-dynamic.onnx"
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(str(fp32), str(dynamic), weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        for label, precision, path in (("ONNX Runtime", "fp32", fp32), ("ONNX Runtime dynamic", "int8", dynamic)):
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            # idle workers sleep: spinning ones would slow the engine timed next
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            engines[f"{label} {precision}"] = (precision, functools.partial(_run_ort, session))
    if importlib.util.find_spec("openvino"):
        import openvino as ov

        core = ov.Core()
        for precision, hint, path in (("fp32", "f32", fp32), ("bf16", "bf16", fp32), ("int8", "bf16", qdq)):
            config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
            compiled = core.compile_model(str(path), "CPU", config)
            engines[f"OpenVINO {precision}"] = (precision, compiled)
    if importlib.util.find_spec("torch"):
        import torch

        torch.set_num_threads(threads)
        weights = _weights(hidden, inner)
        for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            w1, w2 = (torch.from_numpy(w).to(dtype) for w in weights)

            def run(x: np.ndarray, w1: Any = w1, w2: Any = w2, dtype: Any = dtype) -> Any:
                with torch.inference_mode():
                    return ((torch.from_numpy(x).to(dtype) @ w1) @ w2).float().numpy()

            engines[f"PyTorch {precision}"] = (precision, run)
    return engines


def matrix_rates(hidden: int, inner: int, tokens: int, threads: int, rounds: int) -> list[dict[str, Any]]:
    """GFLOP/s of each engine on the feed-forward pair: its fastest of ``rounds`` interleaved calls.

    The fastest call, not the median: a roof is what the machine can do, and on a shared machine
    every engine's rate can fall to half for seconds (seen once on the 2-core EPYC).
    """
    with tempfile.TemporaryDirectory(prefix="crossrank-roofline-") as tmp:
        engines = _engines(Path(tmp), hidden, inner, threads)
        x = np.random.default_rng(2).standard_normal((tokens, hidden), dtype=np.float32)
        w1, w2 = _weights(hidden, inner)
        expected = (x.astype(np.float64) @ w1) @ w2
        flops = 2 * 2 * tokens * hidden * inner
        times: dict[str, list[float]] = {name: [] for name in engines}
        for name, (precision, run) in engines.items():
            out = _first_output(run(x))
            error = float(np.linalg.norm(out - expected) / np.linalg.norm(expected))
            if not error <= TOLERANCE[precision]:
                raise SystemExit(f"roofline: {name} is {error:.1e} off the float64 product (at most "
                                 f"{TOLERANCE[precision]:.0e} expected); its rate would mean nothing")
            for _ in range(2):
                run(x)
        for _ in range(rounds):
            for name, (_, run) in engines.items():
                time.sleep(0.02)  # as the bench does: the previous engine's threads settle
                started = time.perf_counter()
                run(x)
                times[name].append(time.perf_counter() - started)
    return [
        {"engine": name, "precision": precision, "ms": 1e3 * min(times[name]), "gflops": flops / min(times[name]) / 1e9}
        for name, (precision, _) in engines.items()
    ]


def backend_times(
    model: Path, loaded: LoadedModel, threads: int, rounds: int
) -> tuple[dict[str, str], dict[tuple[str, str], float], dict[str, Any]]:
    """Each backend's precision, its median seconds on 100 titles and 100 passages, and their work."""
    from crossrank.bench import prepare_backends, run_bench
    from crossrank.bench.inputs import make_workload
    from crossrank.bench.work import EncoderShape, total_flops
    from crossrank.tokenize import PairTokenizer

    backends = prepare_backends(
        model, modes=("exact", "fast"), peers=("sentence-transformers", "flashrank"), threads=threads,
        progress=lambda text: print(f"roofline: {text}", file=sys.stderr),
    )
    result = run_bench(backends, sizes=(100,), repeats=rounds, min_repeats=3, cell_budget_s=120)
    # the reranker's own tokenization gives the token counts every backend sees
    tokenizer = PairTokenizer(loaded.tokenizer, loaded.config.max_length, loaded.config.pad_token_id)
    shape = EncoderShape.from_config(loaded.config)
    work: dict[str, Any] = {}
    for kind in ("titles", "passages"):
        lengths = tokenizer.encode(make_workload(kind, 100).pairs).lengths
        work[kind] = {
            "tokens": int(lengths.sum()),
            "useful_gflop": total_flops(shape, lengths) / 1e9,
            "cut_gflop": total_flops(shape, lengths, first_token=True) / 1e9,
        }
    times = {(c.backend, c.kind): statistics.median(c.seconds) for c in result.cells}
    return {b.name: precision_of(b.label) for b in backends}, times, work


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="threads for every engine and backend (default: 2)")
    parser.add_argument("--rounds", type=int, default=8, help="timed rounds per measurement (default: 8)")
    parser.add_argument("--tokens", type=int, default=2048,
                        help="rows of the matrix-rate product (default: 2048, the fast mode's batch with 2 threads)")
    parser.add_argument("--model", help="a cross-encoder directory or hub id (default: the bench's random MiniLM-L6)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from crossrank.bench import default_bench_model
    from crossrank.bench.work import EncoderShape
    from crossrank.models.load import load_model

    model = Path(args.model) if args.model else default_bench_model()
    loaded = load_model(model, task="sequence-classification")
    shape = EncoderShape.from_config(loaded.config)
    hidden, inner = shape.hidden, shape.intermediate
    print(f"roofline: matrix rates ({args.tokens} x {hidden} x {inner}, {args.threads} threads)", file=sys.stderr)
    rates = matrix_rates(hidden, inner, args.tokens, args.threads, max(args.rounds, 5) * 4)
    roof = {p: max(r["gflops"] for r in rates if r["precision"] == p) for p in {r["precision"] for r in rates}}

    print(f"## Matrix-multiply rate ({args.tokens} x {hidden} x {inner} then x {hidden}, {args.threads} threads,"
          f" fastest of {max(args.rounds, 5) * 4} calls)\n")
    print("| engine | precision | ms | GFLOP/s |\n|---|---|---|---|")
    for r in sorted(rates, key=lambda r: (r["precision"], -r["gflops"])):
        print(f"| {r['engine']} | {r['precision']} | {r['ms']:.2f} | {r['gflops']:,.0f} |")

    precisions, times, work = backend_times(model, loaded, args.threads, args.rounds)
    print("\n## Useful work per second (100 documents; the full model on real tokens, no padding)\n")
    print("| backend | precision | 100 titles | GFLOP/s | % of roof | 100 passages | GFLOP/s | % of roof |")
    print("|---|---|---|---|---|---|---|---|")
    for backend, precision in precisions.items():
        cells = []
        for kind in ("titles", "passages"):
            seconds = times[(backend, kind)]
            rate = work[kind]["useful_gflop"] / seconds
            share = f"{100 * rate / roof[precision]:.0f} %" if precision in roof else "-"
            cells += [f"{1e3 * seconds:,.0f} ms", f"{rate:,.0f}", share]
        print(f"| {backend} | {precision} | " + " | ".join(cells) + " |")
    print("\n" + ", ".join(
        f"100 {k}: {w['tokens']:,} tokens, {w['useful_gflop']:.1f} GFLOP ({w['cut_gflop']:.1f} with the first-token cut)"
        for k, w in work.items()
    ))

    goals = []
    print("\n## The speed goals against the roof\n")
    print("Floor: crossrank's work (first-token cut) at the best matrix rate measured for the precision.\n")
    print("| goal | target | floor at the roof | best ratio at the roof | met at the roof? | measured |")
    print("|---|---|---|---|---|---|")
    reference = "sentence-transformers"
    for mode, kind, ratio in GOALS:
        backend = f"crossrank-{mode}"
        if (reference, kind) not in times or (backend, kind) not in times:
            continue  # a peer or mode not installed here
        st = times[(reference, kind)]
        precision = precisions[backend]
        if precision not in roof:
            continue
        floor = work[kind]["cut_gflop"] / roof[precision]
        measured = times[(backend, kind)]
        goals.append({"mode": mode, "kind": kind, "goal": ratio, "target_ms": 1e3 * st / ratio,
                      "floor_ms": 1e3 * floor, "best_ratio": st / floor, "measured_ms": 1e3 * measured,
                      "measured_ratio": st / measured})
        print(
            f"| {mode} ≥ {ratio:g}× at 100 {kind} | {1e3 * st / ratio:,.0f} ms | {1e3 * floor:,.0f} ms ({precision}) "
            f"| {st / floor:.2f}× | {'yes' if st / floor >= ratio else 'no'} | {1e3 * measured:,.0f} ms, {st / measured:.2f}× |"
        )
    if "int8" in roof:
        print("\nAt the int8 roof, for reference: " + ", ".join(
            f"100 {k} {1e3 * work[k]['cut_gflop'] / roof['int8']:,.0f} ms "
            f"({times[(reference, k)] / (work[k]['cut_gflop'] / roof['int8']):.1f}× sentence-transformers)"
            for k in ("titles", "passages") if (reference, k) in times
        ))
    if args.json:
        payload = {"threads": args.threads, "tokens": args.tokens, "rates": rates, "roof": roof, "work": work,
                   "times_ms": {f"{b}|{k}": 1e3 * s for (b, k), s in times.items()}, "goals": goals}
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
