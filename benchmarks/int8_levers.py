"""What each int8 lever is worth on this CPU: speed and ranking fidelity of the ways to quantize one model.

The int8 mode's ONNX Runtime engine (dynamic int8 on SmoothQuant-scaled weights, error-prone ops kept in
fp32) is one choice among several. This benchmark builds the others on the same graph, calibration pairs
and inputs, and serves each through the same reranker (only the graph differs), so that the choice is a
measurement:

* ``every op s8 7-bit, alpha A``: every weight MatMul quantized (weights int8 per output channel in 7 bits,
  each call's activations uint8 over the whole tensor), for each SmoothQuant strength; what the mode's
  search starts from;
* ``every op u8 8-bit, alpha A``: weights uint8 in 8 bits, served by ONNX Runtime's u8·u8 kernels (no
  16-bit saturation on AVX2, so no 7-bit weights);
* ``every op, per-op alpha``: the SmoothQuant strength of each input tensor chosen by the quantization
  error estimated in NumPy (:func:`crossrank.runtime.int8_onnx.sensitivity`) instead of one for all;
* ``every op, per-token activation scales``: each matrix op's input quantized row by row (a scale per
  token) with MatMulInteger, instead of one scale per call;
* ``every op, outlier channels in fp32``: LLM.int8()'s decomposition on top of SmoothQuant: the few input
  channels largest after smoothing (0.5 % of each input tensor's, by the calibration maximum) go
  through a small fp32 product added after the bias, the rest through the int8 one (their weight rows
  zeroed there, so the int8 ranges see neither); the fp32 graph is checked to compute the same scores;
* ``MatMulNBits 8-bit, block 32``: ONNX Runtime's blockwise weight quantization with int8 compute
  (accuracy level 4: activations quantized per block of 32); needs ``onnx-ir`` (skipped without it);
* ``int8 mode``: what ``mode="int8", runtime="onnxruntime"`` serves (its search on the same pairs);
* ``exact, fused``: the fp32 graph through ONNX Runtime's transformer optimizer (Attention,
  SkipLayerNormalization, BiasGelu fused), a lever for the exact mode;
* ``ONNX Runtime's BERT int8 recipe``: that fused graph quantized dynamically, its Attention ops as
  QAttention (the recipe ONNX Runtime documents for BERT on CPU). No SmoothQuant: its Mul before each
  projection stops the optimizer from fusing the attention, so this row is compared with ``every op s8
  7-bit, no SmoothQuant``, the unfused graph quantized the same way.

Model: ms-marco-MiniLM-L6-v2 shape with the trained all-MiniLM-L6-v2 body (or ``--model``). Calibration:
the benchmark's calibration pairs (seeds 5000+); evaluation: 100 titles and 100 passages, three queries
each (seeds 100-102), fidelity against exact fp32 as the worst query's top-10 overlap and Spearman.

Usage: python benchmarks/int8_levers.py [--rounds 3] [--only TEXT ...] [--out benchmarks/results/int8_levers.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from fidelity import spearman, top10  # noqa: E402

KINDS = ("titles", "passages")
ALPHAS = (0.5, 0.65, 0.8)
#: the strengths the per-op choice picks from
GRID = (0.4, 0.5, 0.65, 0.8, 0.9)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, help="a trained cross-encoder directory (default: the trained-body "
                        "model)")
    parser.add_argument("--only", action="append", metavar="TEXT", help="build and time only the rows whose name "
                        "holds TEXT (repeatable; the exact row always runs)")
    parser.add_argument("--out", default="benchmarks/results/int8_levers.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from crossrank import Reranker
    from crossrank.bench.inputs import calibration_pairs, make_workload
    from crossrank.models.synthetic import build_random_model, trained_minilm_dir
    from crossrank.runtime import int8_onnx
    from crossrank.runtime.calibration import Calibration
    from crossrank.runtime.onnx import OnnxRuntime

    work = Path(tempfile.mkdtemp(prefix="crossrank-int8-levers-"))
    directory = args.model or build_random_model(work / "trained-body", body_from=trained_minilm_dir(), layers=6)
    exact = Reranker(directory, mode="exact", threads=args.threads, cache_dir=work / "cache")
    graph = Path(exact.runtime.path)  # type: ignore[attr-defined]
    pairs = calibration_pairs(16, 20)
    workloads = {kind: [make_workload(kind, 100, seed=100 + s) for s in range(3)] for kind in KINDS}
    feeds = exact._calibration_batches(pairs)
    model = onnx.load(str(graph))
    activations = int8_onnx.Activations(model, feeds)
    ops = [n.name for n in int8_onnx.weight_matmuls(model)]

    def save(m: Any, name: str) -> Path:
        path = work / f"{name}.onnx"
        onnx.save(m, str(path), save_as_external_data=True, location=f"{path.name}.data")
        return path

    smoothed = {a: save(int8_onnx.smooth(model, activations, a), f"smoothed-{a}") for a in (*ALPHAS, *GRID)}

    def dynamic(source: Path, name: str, u8_weights: bool = False) -> Path:
        """Every op of ``source`` quantized: as the engine does (7-bit s8 weights), or with 8-bit u8 weights."""
        target = work / f"{name}.onnx"
        if not u8_weights:
            int8_onnx.quantized(source, target, ops, reduce_range=True)
        else:
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QUInt8, per_channel=True,
                             reduce_range=False, op_types_to_quantize=["MatMul"], nodes_to_quantize=ops,
                             use_external_data_format=True)
        return target

    builders: dict[str, Callable[[], Path | Reranker]] = {"exact": lambda: graph}
    for a in ALPHAS:
        builders[f"every op s8 7-bit, alpha {a}"] = lambda a=a: dynamic(smoothed[a], f"s8-{a}")
    for a in ALPHAS:
        builders[f"every op u8 8-bit, alpha {a}"] = lambda a=a: dynamic(smoothed[a], f"u8-{a}", u8_weights=True)
    builders["every op s8 7-bit, per-op alpha"] = lambda: dynamic(
        save(int8_onnx.smooth(model, activations, per_op_alpha(model, activations, smoothed)), "smoothed-per-op"),
        "s8-per-op")
    builders["every op s8 7-bit, per-token activation scales, alpha 0.8"] = lambda: save(
        per_token(onnx.load(str(smoothed[0.8])), ops, levels=63), "per-token")
    for a in (0.5, 0.8):
        builders[f"every op s8 7-bit, alpha {a}, 0.5 % outlier channels fp32"] = lambda a=a: dynamic(
            checked_split(onnx.load(str(smoothed[a])), activations, 0.005, f"split-{a}"), f"s8-split-{a}")
    builders["MatMulNBits 8-bit, block 32, int8 compute, alpha 0.8"] = lambda: nbits(smoothed[0.8], work / "nbits.onnx")
    builders["int8 mode (its search, ONNX Runtime)"] = lambda: Reranker(
        directory, mode="int8", runtime="onnxruntime", threads=args.threads, cache_dir=work / "cache",
        calibration=Calibration(tuple(pairs), source="benchmark pairs"))
    builders["exact, fused by ONNX Runtime's transformer optimizer"] = lambda: fused(graph, work / "fused.onnx",
                                                                                     exact.config.raw)
    builders["every op s8 7-bit, no SmoothQuant"] = lambda: dynamic(graph, "s8-raw")
    builders["ONNX Runtime's BERT int8 recipe: fused, QAttention, no SmoothQuant"] = lambda: fused_int8(
        graph, work, exact.config.raw)

    def checked_split(smoothed_model: Any, activations: Any, share: float, name: str) -> Path:
        """The split graph, saved, after checking that in fp32 it scores as the exact graph does."""
        # every input tensor split (min_gain 1), as the row's name says; the int8 mode splits only where it pays
        path = save(int8_onnx.split_outliers(smoothed_model, activations, share, min_gain=1.0), name)
        fp32 = copy.copy(exact)
        fp32.runtime, fp32.cache = OnnxRuntime(path, threads=args.threads), None
        w = workloads["passages"][0]
        diff = np.abs(fp32.score(w.query, w.documents, activation="none")
                      - exact.score(w.query, w.documents, activation="none")).max()
        if diff > 1e-4:
            raise AssertionError(f"the outlier split changed the fp32 scores by {diff}")
        return path

    builders = {name: build for name, build in builders.items()
                if name == "exact" or not args.only or any(part in name for part in args.only)}
    served: dict[str, Reranker] = {}
    skipped: dict[str, str] = {}
    for name, build in builders.items():
        try:
            made = build()
        except ImportError as exc:
            skipped[name] = f"{exc.name or exc} is not installed"
            print(f"{name}: skipped ({skipped[name]})", file=sys.stderr)
            continue
        if isinstance(made, Reranker):
            served[name] = made
        else:  # the exact reranker serving another graph: same tokenization, batches and head
            served[name] = copy.copy(exact)
            served[name].runtime = OnnxRuntime(made, threads=args.threads)
            served[name].cache = None
        print(f"{name}: built", file=sys.stderr)

    refs = {(kind, i): exact.score(w.query, w.documents, activation="none")
            for kind, ws in workloads.items() for i, w in enumerate(ws)}
    fidelity: dict[str, dict[str, Any]] = {}
    for name, reranker in served.items():
        for (kind, i), ref in refs.items():
            got = reranker.score(workloads[kind][i].query, workloads[kind][i].documents, activation="none")
            row = fidelity.setdefault(f"{name}|{kind}", {"top10": 10, "spearman": 1.0})
            row["top10"] = min(row["top10"], top10(got, ref))
            row["spearman"] = round(min(row["spearman"], spearman(got, ref)), 4)

    times: dict[str, list[float]] = {}
    for kind, ws in workloads.items():
        for reranker in served.values():
            reranker.score(ws[0].query, ws[0].documents)  # warm-up
        for _ in range(args.rounds):
            for w in ws:
                for name, reranker in served.items():  # interleaved: a busy moment hits every row alike
                    started = time.perf_counter()
                    reranker.score(w.query, w.documents)
                    times.setdefault(f"{name}|{kind}", []).append(time.perf_counter() - started)
    median_ms = {key: round(1e3 * statistics.median(v), 1) for key, v in times.items()}

    lines = ["| graph | 100 titles | × exact | top-10 | Spearman | 100 passages | × exact | top-10 | Spearman |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in served:
        cells = []
        for kind in KINDS:
            ms, fid = median_ms[f"{name}|{kind}"], fidelity[f"{name}|{kind}"]
            cells += [f"{ms:,.0f} ms", f"{median_ms[f'exact|{kind}'] / ms:.2f}×", f"{fid['top10']}/10",
                      f"{fid['spearman']:.4f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    result = {
        "model": str(args.model) if args.model else "MiniLM-L6 shape, trained all-MiniLM-L6-v2 body, random head",
        "calibration_pairs": len(pairs), "median_ms": median_ms, "fidelity": fidelity, "skipped": skipped,
        "int8_mode": served["int8 mode (its search, ONNX Runtime)"].int8_report if
        "int8 mode (its search, ONNX Runtime)" in served else None,
        "rounds": args.rounds, "threads": args.threads, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "table": table,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def per_op_alpha(model: Any, activations: Any, smoothed: dict[float, Path]) -> dict[str, float]:
    """Each weight MatMul input tensor's SmoothQuant strength from :data:`GRID`: the one whose consumers' summed
    estimated quantization error (7-bit weights) is least."""
    import onnx

    from crossrank.runtime import int8_onnx

    source = {n.name: n.input[0] for n in int8_onnx.weight_matmuls(model)}
    error: dict[str, dict[float, float]] = {}
    for alpha in GRID:
        for op, err in int8_onnx.sensitivity(onnx.load(str(smoothed[alpha])), activations, reduce_range=True):
            tensor = error.setdefault(source[op], {})
            tensor[alpha] = tensor.get(alpha, 0.0) + err
    return {tensor: min(by_alpha, key=lambda a: by_alpha[a]) for tensor, by_alpha in error.items()}


def per_token(model: Any, ops: list[str], levels: int) -> Any:
    """``model`` with each op of ``ops`` quantized with a scale per token: the input's rows symmetric in
    uint8 around 128, weights int8 per output channel in ±``levels``, MatMulInteger, then both scales."""
    from onnx import TensorProto, helper, numpy_helper

    weights = {i.name: i for i in model.graph.initializer}
    added = [numpy_helper.from_array(np.array(v, dtype), name) for name, v, dtype in
             [("pt/eps", 1e-8, np.float32), ("pt/127", 127.0, np.float32), ("pt/128", 128.0, np.float32),
              ("pt/zero_point", 128, np.uint8)]]
    nodes, quantized = [], set()
    for node in model.graph.node:
        if node.name not in ops:
            nodes.append(node)
            continue
        x, w_name = node.input
        w = numpy_helper.to_array(weights[w_name]).astype(np.float32)
        w_scale = np.abs(w).max(axis=0) / levels
        w_scale[w_scale == 0] = 1.0
        added += [numpy_helper.from_array(np.clip(np.round(w / w_scale), -levels, levels).astype(np.int8),
                                          f"{node.name}/wq"),
                  numpy_helper.from_array(w_scale.astype(np.float32), f"{node.name}/w_scale")]
        if x not in quantized:  # once per input tensor: |x| row max, x / scale rounded, shifted to uint8
            quantized.add(x)
            nodes += [helper.make_node("Abs", [x], [f"{x}/abs"]),
                      helper.make_node("ReduceMax", [f"{x}/abs"], [f"{x}/max"], axes=[-1], keepdims=1),
                      helper.make_node("Max", [f"{x}/max", "pt/eps"], [f"{x}/max_eps"]),
                      helper.make_node("Div", [f"{x}/max_eps", "pt/127"], [f"{x}/scale"]),
                      helper.make_node("Div", [x, f"{x}/scale"], [f"{x}/scaled"]),
                      helper.make_node("Round", [f"{x}/scaled"], [f"{x}/rounded"]),
                      helper.make_node("Add", [f"{x}/rounded", "pt/128"], [f"{x}/shifted"]),
                      helper.make_node("Cast", [f"{x}/shifted"], [f"{x}/q"], to=TensorProto.UINT8)]
        nodes += [helper.make_node("MatMulInteger", [f"{x}/q", f"{node.name}/wq", "pt/zero_point"],
                                   [f"{node.name}/int32"]),
                  helper.make_node("Cast", [f"{node.name}/int32"], [f"{node.name}/float"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", [f"{node.name}/float", f"{x}/scale"], [f"{node.name}/row_scaled"]),
                  helper.make_node("Mul", [f"{node.name}/row_scaled", f"{node.name}/w_scale"], [node.output[0]])]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(added)
    return model


def nbits(source: Path, target: Path) -> Path:
    """``source`` with its MatMuls as MatMulNBits: 8-bit symmetric weights in blocks of 32, int8 compute."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer  # imports onnx_ir

    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), bits=8, block_size=32, is_symmetric=True,
                                     accuracy_level=4)
    quantizer.process()
    quantizer.model.save_model_to_file(str(target), use_external_data_format=True)
    return target


def fused(source: Path, target: Path, config: dict[str, Any]) -> Path:
    """``source`` through ONNX Runtime's transformer optimizer (BERT fusions)."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(source), model_type="bert", num_heads=int(config["num_attention_heads"]),
                               hidden_size=int(config["hidden_size"]), opt_level=0)
    optimized.save_model_to_file(str(target), use_external_data_format=True)
    return target


def fused_int8(source: Path, work: Path, config: dict[str, Any]) -> Path:
    """``source`` fused by the transformer optimizer, then every MatMul and Attention quantized dynamically
    (Attention becomes QAttention), weights as the engine's (int8 per channel, 7 bits)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = work / "fused-int8.onnx"
    # the fused ops' outputs have no inferred type: tell the quantizer they are fp32
    quantize_dynamic(str(fused(source, work / "fused-for-int8.onnx", config)), str(target),
                     weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                     op_types_to_quantize=["MatMul", "Attention"], use_external_data_format=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return target


if __name__ == "__main__":
    main()
