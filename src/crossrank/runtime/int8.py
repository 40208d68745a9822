"""``mode="int8"``: static int8 quantization with NNCF, calibrated on the user's pairs, that keeps the ranking.

The first-token ONNX graph is converted to OpenVINO and quantized by ``nncf.quantize``
(``ModelType.TRANSFORMER``, which applies SmoothQuant: on the trained-body MiniLM-L6 it raised the
held-out fidelity of a fully quantized model from 0.94 to 0.98); activations are calibrated on the
user's own (query, document) pairs, tokenized as they are served. Then a measured search keeps the
ranking: each candidate is scored on held-out calibration queries (each ranking every held-out
document: lists as long as served ones), as it will be served, against the fp32 model. The first
candidate whose worst held-out query keeps Spearman >= 1 - ``max_drop`` and 9 of its top 10 is kept
(:meth:`~crossrank.runtime.calibration.Calibration.accepts`); the candidates keep more and more
matrix-op groups in higher precision (see :func:`_matmul_groups`: none, the feed-forward down
projections, plus attention's own products, all but the up projections, every one). What stays
unquantized runs in bf16 where the CPU computes bf16 natively, else in fp32.

Why not ``nncf.quantize_with_accuracy_control``: it ranks each of the ~46 quantized ops of a
MiniLM-L6 one by one and re-ranks after each revert (over 15 minutes on 2 cores, unfinished), and
it reverts a MatMul's weights but not the SmoothQuant scale on its input (a fully reverted model
scored nothing like the original). A group search costs at most four quantization passes.

The quantized IR and a report (ops kept in higher precision, fidelity measured on the
held-out queries in the serving precision, and its speed against the unquantized model here: a
warning says when int8 does not pay off, as on a CPU without VNNI or AMX) are cached per graph, calibration set, settings
and NNCF/OpenVINO versions, so a second load reads them back.

Needs ``pip install 'crossrank[int8]'`` (``openvino`` and ``nncf``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crossrank.extras import require
from crossrank.models.derived import derived_dir, publish
from crossrank.runtime.calibration import Calibration, Pair, held_out_warning

if TYPE_CHECKING:
    from crossrank.runtime.openvino import OpenVinoRuntime

log = logging.getLogger(__name__)

Feed = dict[str, np.ndarray]
#: turns pairs into the padded batches the model is fed in serving
Encoder = Callable[[list[Pair]], list[Feed]]
PURPOSE = "The int8 mode (NNCF quantization for OpenVINO)"
TOP_K = 10
#: the ops that multiply matrices, which int8 speeds up (attention may be one fused op)
MATRIX_OPS = ("MatMul", "ScaledDotProductAttention")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (1.0 for fewer than two items or constant scores that agree)."""
    if len(a) < 2:
        return 1.0
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if ra.std() == 0 or rb.std() == 0:
        return 1.0 if np.array_equal(ra, rb) else 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def overlap(a: np.ndarray, b: np.ndarray, k: int = TOP_K) -> float:
    """Share of ``b``'s top k (at most half the list) that is also in ``a``'s."""
    k = max(1, min(k, len(a) // 2))
    return len(set(np.argsort(-a)[:k].tolist()) & set(np.argsort(-b)[:k].tolist())) / k


def fidelity(scores: np.ndarray, reference: np.ndarray) -> float:
    """One query's ranking fidelity: the mean of Spearman and the top-10 overlap (1.0: same ranking)."""
    return (spearman(scores, reference) + overlap(scores, reference)) / 2


def logits(run: Callable[[Feed], Any], feeds: list[Feed]) -> np.ndarray:
    return np.concatenate([np.asarray(run(feed), dtype=np.float64).reshape(len(feed["input_ids"]), -1)[:, 0]
                           for feed in feeds])


def serving_hint(bf16: bool) -> str:
    return "bf16" if bf16 else "f32"


def _matmul_groups(model: Any) -> list[tuple[str, list[str]]]:
    """The matrix ops to keep in higher precision at each step of the search, most sensitive first:
    the feed-forward down projections (inner size -> hidden size, fed GELU's long-tailed outputs;
    also the one-logit classifier), then attention's own products (queries x keys, weights x values:
    both inputs are activations), then all but the feed-forward up projections (a third of the
    weights' work), then every matrix op.

    On the trained-body MiniLM-L6 (4 held-out queries of 20 documents), with SmoothQuant: all
    quantized, Spearman 0.96-0.997; down projections kept, 0.990-0.996; attention products kept
    instead, 0.977-0.997; the last layer kept, 0.974-0.999."""
    attention, down, up, every = [], [], [], []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in MATRIX_OPS:
            continue
        every.append(op.get_friendly_name())
        if op.get_type_name() == "ScaledDotProductAttention":  # attention fused into one op
            attention.append(op.get_friendly_name())
            continue
        weight = op.input_value(1).get_node()
        while weight.get_type_name() in ("Convert", "Transpose", "Reshape"):
            weight = weight.input_value(0).get_node()
        if weight.get_type_name() != "Constant":
            attention.append(op.get_friendly_name())
            continue
        inner, outer = op.get_input_partial_shape(0)[-1], op.get_output_partial_shape(0)[-1]
        if inner.is_static and outer.is_static and inner.get_length() > outer.get_length():
            down.append(op.get_friendly_name())
        elif inner.is_static and outer.is_static and inner.get_length() < outer.get_length():
            up.append(op.get_friendly_name())
    steps = [("none", []), ("feed-forward down projections", down),
             ("feed-forward down projections and attention products", down + attention),
             ("every matrix op but the feed-forward up projections", [n for n in every if n not in up]),
             ("every matrix op", every)]
    return [step for i, step in enumerate(steps) if i == 0 or len(step[1]) > len(steps[i - 1][1])]


def quantize_graph(model: Any, calibration: list[Feed], accept: Callable[[Any], tuple[bool, dict[str, Any]]]) -> Any:
    """The OpenVINO ``model`` quantized to int8, keeping the fewest matrix-op groups in higher precision
    (:func:`_matmul_groups`) with which ``accept(quantized)`` holds; every one kept when none does."""
    nncf = require("nncf", "int8", PURPOSE)
    steps = _matmul_groups(model)
    for number, (kept, names) in enumerate(steps, 1):
        log.warning("int8: quantizing with %s kept in higher precision (step %d of at most %d)", kept, number, len(steps))
        quantized = nncf.quantize(
            model.clone(), nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration), ignored_scope=nncf.IgnoredScope(names=names, validate=False),
            advanced_parameters=nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix(overflow_fix())),
        )
        ok, measured = accept(quantized)
        log.warning("int8: %s kept: fidelity %.4f (Spearman >= %.4f, top-%d overlap >= %.2f)%s", kept,
                    measured["fidelity"], measured["spearman_min"], TOP_K, measured[f"top{TOP_K}_overlap_min"],
                    "; accepted" if ok else "; below the bound")
        if ok or number == len(steps):
            return quantized
    raise AssertionError("unreachable")


def _speed(core: Any, model: Any, quantized: Any, lists: list[list[Feed]], hint: str, rounds: int = 3) -> dict[str, Any]:
    """Median milliseconds to score the held-out lists, quantized against unquantized (both in ``hint``,
    on this machine), and the ratio: whether int8 pays off here depends on the CPU's int8 instructions."""

    def median_ms(graph: Any) -> float:
        compiled = core.compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        feeds = [feed for group in lists for feed in group]
        compiled(feeds[0])  # warm-up
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            for feed in feeds:
                compiled(feed)
            times.append(time.perf_counter() - started)
        return float(np.median(times)) * 1000

    unquantized, int8 = median_ms(model), median_ms(quantized)
    return {"unquantized_ms": round(unquantized, 1), "int8_ms": round(int8, 1),
            "speedup": round(unquantized / int8, 2), "int8_instructions": int8_instructions()}


def overflow_fix() -> str:
    """NNCF's overflow fix for this CPU: ``"enable"`` (weights in 7 bits in every layer) where the CPU has no
    VNNI or AMX, whose int8 products then go through 16-bit sums that saturate (on a tiny BERT with AVX2
    only, scores of the fully quantized model correlated 0.68 with fp32 without it); else NNCF's default,
    ``"first_layer_only"``."""
    return "first_layer_only" if _int8_units() else "enable"


def _int8_units() -> list[str]:
    """The CPU's int8 dot-product instructions, strongest first (empty: only AVX2's multiply-adds)."""
    from crossrank.runtime.select import cpu_flags

    return [name for flag, name in (("amx_int8", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"))
            if flag in cpu_flags()]


def int8_instructions() -> str:
    """The CPU's int8 matrix instructions, for messages ("none (no VNNI or AMX)" where it has neither)."""
    return ", ".join(_int8_units()) or "none (no VNNI or AMX)"


def count_matrix_ops(model: Any) -> tuple[int, int]:
    """(matrix ops, those fed an int8-quantized activation)."""
    total = quantized = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() in MATRIX_OPS:
            total += 1
            sources = [op.input_value(i).get_node().get_type_name() for i in range(op.get_input_size())]
            quantized += "FakeQuantize" in sources
    return total, quantized


def _fill(onnx: Path, calibration: Calibration, encode: Encoder, bf16: bool, staging: Path) -> None:
    ov = require("openvino", "int8", PURPOSE)
    started = time.perf_counter()
    model = ov.convert_model(str(onnx))
    names = {p.get_any_name() for p in model.inputs}
    calibrate, held = calibration.split()
    warning = held_out_warning(len(held), calibration.source)
    if warning:
        log.warning(warning)

    def declared(feeds: list[Feed]) -> list[Feed]:
        return [{k: v for k, v in feed.items() if k in names} for feed in feeds]

    core = ov.Core()
    exact = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    held_feeds = [declared(encode(group)) for group in held]
    validation = [(feeds, logits(lambda f: exact(f)[0], feeds)) for feeds in held_feeds]
    log.warning("int8: calibrating on %d pairs, measuring ranking fidelity on %d held-out queries (%d pairs), "
                "max_drop %s; this takes a while (once; cached)", len(calibrate), len(held),
                sum(len(g) for g in held), calibration.max_drop)
    found: dict[str, Any] = {}

    def accept(quantized: Any) -> tuple[bool, dict[str, Any]]:
        """Ranking fidelity of ``quantized`` as served (its other ops in the serving precision)."""
        serving = core.compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": serving_hint(bf16)})
        got = [logits(lambda f: serving(f)[0], feeds) for feeds, _ in validation]
        refs = [ref for _, ref in validation]
        found.clear()
        found.update({
            "fidelity": round(float(np.mean([fidelity(g, r) for g, r in zip(got, refs)])), 5),
            "spearman_min": round(min(spearman(g, r) for g, r in zip(got, refs)), 5),
            "spearman_mean": round(float(np.mean([spearman(g, r) for g, r in zip(got, refs)])), 5),
            f"top{TOP_K}_overlap_min": round(min(overlap(g, r) for g, r in zip(got, refs)), 3),
        })
        return calibration.accepts(found["spearman_min"], found[f"top{TOP_K}_overlap_min"]), found

    quantized = quantize_graph(model, declared(encode(calibrate)), accept)
    total, int8 = count_matrix_ops(quantized)
    speed = _speed(core, model, quantized, [feeds for feeds, _ in validation], serving_hint(bf16))
    report = {
        "calibration_pairs": len(calibrate), "validation_queries": len(held),
        "validation_pairs": sum(len(g) for g in held), "max_drop": calibration.max_drop,
        "matrix_ops": total, "matrix_ops_int8": int8, "matrix_ops_kept_in_higher_precision": total - int8,
        "higher_precision": serving_hint(bf16), "fidelity": dict(found), "speed": speed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    log.warning("int8: %d of %d matrix ops quantized, %d kept in %s; held-out fidelity: Spearman >= %.4f, top-%d "
                "overlap >= %.2f (%.0f s)", int8, total, total - int8, report["higher_precision"],
                found["spearman_min"], TOP_K, found[f"top{TOP_K}_overlap_min"], report["seconds"])
    if speed["speedup"] < 1.0:
        log.warning("int8: the quantized model measured slower than the unquantized one in %s here (%s ms against "
                    "%s ms on the held-out lists): on this CPU (int8 dot products: %s) mode='fast' or 'exact' serves "
                    "faster", serving_hint(bf16), speed["int8_ms"], speed["unquantized_ms"], int8_instructions())
    ov.save_model(quantized, str(staging / "model.xml"))
    (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")


def quantized_ir(onnx: Path, cache_dir: Path, calibration: Calibration, encode: Encoder, *, bf16: bool,
                 settings: str = "") -> tuple[Path, dict[str, Any]]:
    """The int8 IR of ``onnx`` for ``calibration`` and its report, made once and cached under ``cache_dir``.

    ``settings`` names what else the batches depend on (the tokenizer's limits).
    """
    ov = require("openvino", "int8", PURPOSE)
    nncf = require("nncf", "int8", PURPOSE)
    recipe = (f"int8|{calibration.digest()}|{settings}|{serving_hint(bf16)}|overflow fix {overflow_fix()}|"
              f"ov {ov.__version__}|nncf {nncf.__version__}")
    target = derived_dir(onnx, cache_dir / "int8", recipe)
    if not (target / "report.json").is_file():
        publish(target, lambda staging: _fill(onnx, calibration, encode, bf16, staging))
    report: dict[str, Any] = json.loads((target / "report.json").read_text())
    return target / "model.xml", report


def int8_runtime(onnx: Path, cache_dir: Path, calibration: Calibration, encode: Encoder, *, threads: int | None,
                 pad_id: int, max_width: int, settings: str,
                 max_batch_tokens: int | None = None) -> tuple[OpenVinoRuntime, dict[str, Any]]:
    """An OpenVINO runtime on the int8 IR of ``onnx`` (quantized on first use), and its report."""
    from crossrank.runtime.openvino import OpenVinoRuntime
    from crossrank.runtime.select import has_native_bf16

    bf16 = has_native_bf16()
    path, report = quantized_ir(onnx, cache_dir, calibration, encode, bf16=bf16, settings=settings)
    runtime = OpenVinoRuntime(path, precision="bf16" if bf16 else "f32", threads=threads, pad_id=pad_id,
                              max_width=max_width, cache_dir=cache_dir / "openvino", max_batch_tokens=max_batch_tokens)
    runtime.providers = [f"OpenVINO CPU (int8, the rest {serving_hint(bf16)})"]
    return runtime, report


def summary(report: dict[str, Any]) -> str:
    """One line on what was quantized and the fidelity measured at calibration."""
    fid = report["fidelity"]
    return (f"int8 mode: {report['matrix_ops_int8']} of {report['matrix_ops']} matrix ops int8, "
            f"{report['matrix_ops_kept_in_higher_precision']} kept in {report['higher_precision']}; on "
            f"{report['validation_queries']} held-out calibration queries Spearman >= {fid['spearman_min']}, "
            f"top-{TOP_K} overlap >= {fid[f'top{TOP_K}_overlap_min']}"
            + (f"; {report['speed']['speedup']}x the unquantized model's speed here" if "speed" in report else ""))
