"""The ONNX Runtime engine of ``mode="int8"``: dynamic int8 matrix products on SmoothQuant-scaled weights.

ONNX Runtime's dynamic quantization (``quantize_dynamic``: weights int8 per output channel, each
call's activations uint8 over the whole tensor) runs on every x86 CPU, AVX2 included, where its
multiply-adds beat fp32 (on a 2-core AVX2 EPYC a fully quantized MiniLM-L6 ran 1.5x exact) and
OpenVINO's static int8 did not. A tensor-wide activation range is coarse where a few channels carry
outliers (BERT's LayerNorm outputs, GELU's tail), so before quantizing, the scales of SmoothQuant
move part of each input channel's range into the weights: a ``Mul`` by 1/s on the input (one per
distinct input tensor), the weight's row multiplied by s, with
``s = max|x|^alpha / max|w|^(1 - alpha)`` over the calibration pairs. On the trained-body
MiniLM-L6 that raised the worst Spearman of a fully quantized model from 0.92 to 0.98.

SmoothQuant moves only part of an outlier channel's range. The few channels still largest after it
(:data:`OUTLIER_SHARE` of each input tensor's, by the calibration maximum) then skip the int8 product,
as in LLM.int8()'s decomposition (:func:`split_outliers`): a small fp32 product of those channels and
their weight rows is added after the bias, and the int8 product sees them as zeros, so neither its
activation range nor its weight scales carry them. On the trained-body MiniLM-L6 (every op int8,
alpha 0.8, 100 unseen titles / passages) that raised the worst Spearman from 0.9906 / 0.9827 to
0.9952 / 0.9910, at 0.92-0.98x the unsplit model's speed. A tensor is split only where removing its
outlier channels makes its range at least :data:`OUTLIER_MIN_GAIN` times smaller. On that model (alpha
0.5) the split shrank the range of the feed-forward down projections' inputs 6-12x in layers 0-3, and
that of Q/K/V's inputs and the attention outputs' only 1.05-1.4x (layer 0's attention output 2x), for
24 of the 36 split products, while the split's ops took 13 % of the model's time at 100 titles. With the
rule every op stayed int8 on both trained models (the search kept 2 in fp32 before) at 1.3x / 1.3-1.4x
exact's speed (before 1.13-1.15x / 1.2-1.26x), with the unseen queries' ranking level (docs/PERFORMANCE.md).

The search that keeps the ranking (:func:`search`): the alpha of :data:`ALPHAS` whose fully quantized
(split) model ranks best on the held-out queries; then, while the bound fails, the matrix ops whose quantized
output strays most from fp32 on the calibration activations (:func:`sensitivity`, computed in NumPy:
no model run per op) are kept in fp32, the fewest that pass found by doubling then bisection, each
step measured on the held-out queries. On CPUs without VNNI or AMX the weights get 7 bits (ONNX
Runtime's ``reduce_range``), as their int8 products go through 16-bit sums that saturate.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

Feed = dict[str, np.ndarray]
#: the SmoothQuant migration strengths tried (0: none; 1: all of an input channel's range into the weights)
ALPHAS = (0.5, 0.65, 0.8)
#: the share of each matrix-op input tensor's channels kept out of the int8 product (at least one)
OUTLIER_SHARE = 0.005
#: split a tensor's outlier channels only where that makes its int8 range at least this much finer
#: (2: one bit); below it the split's fp32 ops cost more time than they return in precision
OUTLIER_MIN_GAIN = 2.0
#: rows of each matrix op's input kept per calibration batch to estimate its quantization error
SAMPLE_ROWS = 256


def weight_matmuls(model: Any) -> list[Any]:
    """The graph's MatMul nodes whose second input is a constant weight (what dynamic quantization quantizes)."""
    constants = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in constants]


class Activations:
    """Each weight MatMul input's per-channel largest magnitude over the calibration batches, and row samples
    (with the batch's per-channel range: dynamic quantization takes each call's whole range)."""

    def __init__(self, model: Any, feeds: list[Feed]) -> None:
        import onnx
        import onnxruntime as ort

        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        names = sorted({n.input[0] for n in weight_matmuls(model)})
        known = {o.name for o in probe.graph.output}
        for name in names:
            if name not in known:
                probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        declared = {i.name for i in session.get_inputs()}
        self.amax: dict[str, np.ndarray] = {}
        self.samples: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {name: [] for name in names}
        rng = np.random.default_rng(0)
        for feed in feeds:
            outputs = session.run(names, {k: v for k, v in feed.items() if k in declared})
            for name, value in zip(names, outputs):
                rows = np.asarray(value, dtype=np.float32).reshape(-1, value.shape[-1])
                peak = np.abs(rows).max(axis=0)
                self.amax[name] = peak if name not in self.amax else np.maximum(self.amax[name], peak)
                pick = rng.choice(len(rows), size=min(SAMPLE_ROWS, len(rows)), replace=False)
                self.samples[name].append((rows[pick], rows.min(axis=0), rows.max(axis=0)))


def smooth(model: Any, activations: Activations, alpha: float | Mapping[str, float]) -> Any:
    """A copy of ``model`` with SmoothQuant scales: each weight MatMul's input divided by s per channel (one
    ``Mul`` per input tensor), its weight rows multiplied by s. Computes the same function in fp32.

    ``alpha``: one strength for every input tensor, or a strength per input tensor's name."""
    import onnx
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    weights = {i.name: i for i in out.graph.initializer}
    users: dict[str, list[Any]] = {}
    for node in weight_matmuls(out):
        users.setdefault(node.input[0], []).append(node)
    muls: dict[str, Any] = {}  # by the tensor each Mul scales
    for name, nodes in users.items():
        peak_w = np.max([np.abs(numpy_helper.to_array(weights[n.input[1]])).max(axis=1) for n in nodes], axis=0)
        strength = alpha[name] if isinstance(alpha, Mapping) else float(alpha)
        s = np.maximum(activations.amax[name], 1e-5) ** strength / np.maximum(peak_w, 1e-5) ** (1 - strength)
        s = np.clip(s, 1e-3, 1e3).astype(np.float32)
        inverse = f"{name}/smoothquant_inverse_scale"
        out.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), inverse))
        muls[name] = onnx.helper.make_node("Mul", [name, inverse], [f"{name}/smoothquant"], name=f"{name}/smoothquant")
        for node in nodes:
            weight = numpy_helper.to_array(weights[node.input[1]]) * s[:, None]
            weights[node.input[1]].CopyFrom(numpy_helper.from_array(weight.astype(np.float32), node.input[1]))
            node.input[0] = f"{name}/smoothquant"
    # each Mul goes right after the node that makes its input (graph inputs' Muls first)
    made = {o for node in out.graph.node for o in node.output}
    nodes = [mul for name, mul in muls.items() if name not in made]
    for node in out.graph.node:
        nodes.append(node)
        nodes += [muls[o] for o in node.output if o in muls]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def outlier_channels(peak: np.ndarray, share: float, min_gain: float = OUTLIER_MIN_GAIN) -> np.ndarray | None:
    """The indices of the largest ``share`` of channels by ``peak`` (at least one), or None where the largest
    channel is less than ``min_gain`` times the largest of the others: splitting them would not make the
    tensor's int8 range ``min_gain`` times finer."""
    order = np.argsort(-peak, kind="stable")
    count = max(1, math.ceil(share * len(peak)))
    if count >= len(peak) or peak[order[0]] < min_gain * peak[order[count]]:
        return None
    return np.sort(order[:count])


def split_outliers(model: Any, activations: Activations, share: float, min_gain: float = OUTLIER_MIN_GAIN) -> Any:
    """A copy of the SmoothQuant-scaled ``model`` in which each scaled input tensor's largest channels after
    smoothing (``share`` of them, at least one, by the calibration maximum; only where
    :func:`outlier_channels` finds they set the tensor's range) skip the scaled product: gathered
    from the unscaled input, multiplied by their original weight rows in a small MatMul (left in fp32 by the
    quantizer, which is told the original names only) and added after the bias Add; the scaled product sees
    them as zeros (inverse scale 0, weight rows 0). Computes the same function in fp32."""
    import onnx
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: i for i in out.graph.initializer}
    muls = {n.output[0]: n for n in out.graph.node if n.op_type == "Mul" and n.output[0].endswith("/smoothquant")}
    users: dict[str, list[Any]] = {}
    for node in weight_matmuls(out):
        if node.input[0] in muls:
            users.setdefault(node.input[0], []).append(node)
    after: dict[str, list[Any]] = {}  # a node's (first) output -> the nodes that go right after that node
    for smoothed, nodes in users.items():
        mul = muls[smoothed]
        source, inverse_name = mul.input[0], mul.input[1]
        inverse = numpy_helper.to_array(inits[inverse_name]).astype(np.float32).copy()
        chosen = outlier_channels(activations.amax[source] * inverse, share, min_gain)
        if chosen is None:
            continue
        index = f"{source}/outlier_channels"
        out.graph.initializer.append(numpy_helper.from_array(chosen.astype(np.int64), index))
        gathered = f"{source}/outliers"
        after.setdefault(mul.output[0], []).append(
            onnx.helper.make_node("Gather", [source, index], [gathered], name=gathered, axis=-1))
        for node in nodes:
            w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32).copy()
            rows = f"{node.name}/outlier_weight"
            out.graph.initializer.append(numpy_helper.from_array(w[chosen] * inverse[chosen][:, None], rows))
            w[chosen] = 0.0
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(w, node.input[1]))
            readers = [n for n in out.graph.node if node.output[0] in n.input]
            bias = len(readers) == 1 and readers[0].op_type == "Add" and any(i in inits for i in readers[0].input)
            anchor = readers[0] if bias else node  # after the bias: ONNX Runtime still fuses MatMul + bias
            result = anchor.output[0]
            anchor.output[0] = f"{result}/inliers"
            after.setdefault(anchor.output[0], []).extend([
                onnx.helper.make_node("MatMul", [gathered, rows], [f"{result}/outliers"], name=f"{node.name}/outliers"),
                onnx.helper.make_node("Add", [f"{result}/inliers", f"{result}/outliers"], [result],
                                      name=f"{node.name}/outliers_added"),
            ])
        inverse[chosen] = 0.0
        inits[inverse_name].CopyFrom(numpy_helper.from_array(inverse, inverse_name))
    ordered = []
    for node in out.graph.node:
        ordered += [node, *after.get(node.output[0], [])]
    del out.graph.node[:]
    out.graph.node.extend(ordered)
    return out


def _fake_quantized(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """``x`` through uint8 asymmetric quantization over [low, high] (the call's range, zero included)."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255 or 1.0
    zero = np.round(-low / scale)
    return np.asarray((np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale)


def _fake_quantized_weight(w: np.ndarray, levels: int) -> np.ndarray:
    """``w`` through symmetric per-output-channel quantization to ±``levels``."""
    scale = np.abs(w).max(axis=0, keepdims=True) / levels
    scale[scale == 0] = 1.0
    return np.asarray(np.round(w / scale) * scale)


def sensitivity(model: Any, activations: Activations, reduce_range: bool) -> list[tuple[str, float]]:
    """Each weight MatMul of the (smoothed) ``model`` with its relative output error when quantized as ONNX
    Runtime does, on the calibration samples; largest first."""
    from onnx import numpy_helper

    weights = {i.name: i for i in model.graph.initializer}
    inverse = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer
               if i.name.endswith("/smoothquant_inverse_scale")}
    levels = 63 if reduce_range else 127
    errors = []
    for node in weight_matmuls(model):
        source = node.input[0].removesuffix("/smoothquant")
        if source not in activations.samples:  # an outlier product of split_outliers: stays fp32
            continue
        scale = inverse.get(f"{source}/smoothquant_inverse_scale", np.float32(1.0))
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float64)
        wq = _fake_quantized_weight(w, levels)
        num = den = 0.0
        for rows, low, high in activations.samples[source]:
            x = rows.astype(np.float64) * scale
            lo, hi = np.minimum(low * scale, high * scale).min(), np.maximum(low * scale, high * scale).max()
            exact = x @ w
            num += float(np.square(_fake_quantized(x, float(lo), float(hi)) @ wq - exact).sum())
            den += float(np.square(exact).sum())
        errors.append((node.name, (num / den) ** 0.5 if den else 0.0))
    return sorted(errors, key=lambda e: -e[1])


def quantized(source: Path, target: Path, quantize: Sequence[str], reduce_range: bool) -> None:
    """``source`` with the MatMuls named in ``quantize`` quantized dynamically to int8, saved at ``target``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if not quantize:
        raise ValueError("no op to quantize (ONNX Runtime would read an empty list as every op)")
    quiet = _Without("pre-processing before quantization")  # ONNX Runtime's advice for static quantization
    logging.getLogger().addFilter(quiet)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=reduce_range, op_types_to_quantize=["MatMul"], nodes_to_quantize=list(quantize),
                         use_external_data_format=True)
    finally:
        logging.getLogger().removeFilter(quiet)


class _Without(logging.Filter):
    """Drops the log records whose message holds ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


Run = Callable[[Feed], Any]
Measure = Callable[[Run], tuple[bool, dict[str, Any]]]


def search(onnx_path: Path, calibration: list[Feed], measure: Measure, workdir: Path, *, reduce_range: bool,
           threads: int | None) -> tuple[Path, dict[str, Any], Run]:
    """The int8 model that keeps the fewest matrix ops in fp32 with which ``measure(run)`` holds, what was kept
    (``{"alpha", "outlier_share", "outlier_min_gain", "outlier_split_ops", "matrix_ops", "matrix_ops_int8", "kept",
    "fidelity", "steps"}``) and its run
    (on ``threads``). ``measure`` returns whether the run passes and its held-out figures, at least
    ``{"fidelity", "spearman_min", "top10_overlap_min"}``."""
    import onnx

    from crossrank.runtime.onnx import OnnxRuntime

    model = onnx.load(str(onnx_path))
    ops = [n.name for n in weight_matmuls(model)]
    activations = Activations(model, calibration)
    steps: list[dict[str, Any]] = []

    def attempt(smoothed: Path, keep: Sequence[str], label: str) -> tuple[bool, dict[str, Any], Path, Run]:
        target = workdir / f"int8-{len(steps)}.onnx"
        chosen = [n for n in ops if n not in set(keep)]
        if chosen:
            quantized(smoothed, target, chosen, reduce_range)
        else:  # every op kept: the original graph, exactly (ONNX Runtime reads an empty list as "quantize all")
            save(onnx_path, target)
        run = OnnxRuntime(target, threads=threads).run
        ok, found = measure(run)
        steps.append({"step": label, "kept": len(keep), **found, "accepted": ok})
        log.warning("int8 (ONNX Runtime): %s, %d of %d matrix ops kept in fp32: Spearman >= %.4f, top-10 overlap "
                    ">= %.2f%s", label, len(keep), len(ops), found["spearman_min"], found["top10_overlap_min"],
                    "; accepted" if ok else "; below the bound")
        return ok, dict(found), target, run

    tried = []
    split: dict[float, int] = {}  # matrix ops whose outlier channels go through fp32, per alpha
    for alpha in ALPHAS:
        smoothed = workdir / f"smoothed-{alpha}.onnx"
        graph = split_outliers(smooth(model, activations, alpha), activations, OUTLIER_SHARE)
        split[alpha] = sum(n.op_type == "MatMul" and n.name.endswith("/outliers") for n in graph.graph.node)
        onnx.save(graph, str(smoothed), save_as_external_data=True, location=f"{smoothed.name}.data")
        tried.append((alpha, smoothed, *attempt(smoothed, [], f"SmoothQuant alpha {alpha}, outlier channels of "
                                                              f"{split[alpha]} ops split, every matrix op int8")))
    # the strength that passes, else the one whose worst held-out query ranks best (the bound is on the worst)
    alpha, smoothed, ok, found, chosen, run = max(
        tried, key=lambda t: (t[2], t[3]["spearman_min"] + t[3]["top10_overlap_min"] / 10, t[3]["fidelity"]))
    kept: list[str] = []
    if not ok:
        order = [name for name, _ in sensitivity(onnx.load(str(smoothed)), activations, reduce_range)]
        k, below = 1, 0  # doubling: the first k that passes; then bisection between the last failure and it
        while True:
            ok, found, chosen, run = attempt(smoothed, order[:k], f"alpha {alpha}, the {k} most error-prone kept")
            if ok or k == len(order):  # every op kept: the original graph, taken as it is
                break
            below, k = k, min(2 * k, len(order))
        high = k
        while high - below > 1:
            middle = (below + high) // 2
            ok, found_m, target, run_m = attempt(smoothed, order[:middle],
                                                 f"alpha {alpha}, the {middle} most error-prone kept")
            if ok:
                high, found, chosen, run = middle, found_m, target, run_m
            else:
                below = middle
        kept = order[:high]
    return chosen, {"alpha": alpha, "outlier_share": OUTLIER_SHARE, "outlier_min_gain": OUTLIER_MIN_GAIN,
                    "outlier_split_ops": split[alpha], "matrix_ops": len(ops),
                    "matrix_ops_int8": len(ops) - len(kept),
                    "kept": kept, "fidelity": found, "steps": steps}, run


def save(source: Path, target: Path) -> None:
    """The int8 model at ``source`` saved as ``target``, its weights in one file beside it (``<name>.data``: a
    model over protobuf's 2 GB stays loadable)."""
    import onnx

    onnx.save_model(onnx.load(str(source)), str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{target.name}.data", size_threshold=1024)
