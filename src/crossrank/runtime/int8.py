"""``mode="int8"``: static int8 quantization with NNCF, calibrated on the user's pairs, that keeps the ranking.

The first-token ONNX graph is converted to OpenVINO and quantized by
``nncf.quantize_with_accuracy_control`` (``ModelType.TRANSFORMER``): activations are calibrated
on the user's own (query, document) pairs, tokenized as they are served; then a validation
function measures RANKING fidelity on held-out queries against the unquantized (fp32) model —
per query, the mean of Spearman's rank correlation and the top-10 overlap (1.0: the same
ranking). Where the quantized model falls more than ``max_drop`` below, accuracy control ranks
the quantized operations by how much each one moves that metric and returns the worst to
floating point, one at a time, until the drop is within bounds. What stays unquantized runs in
bf16 where the CPU computes bf16 natively, else in fp32.

The quantized IR and a report (ops kept in higher precision, fidelity measured on the
held-out queries in the serving precision) are cached per graph, calibration set, settings
and NNCF/OpenVINO versions, so a second load reads them back.

Needs ``pip install 'crossrank[int8]'`` (``openvino`` and ``nncf``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.extras import require
from crossrank.models.derived import derived_dir, publish
from crossrank.runtime.calibration import Calibration, Pair

log = logging.getLogger(__name__)

Feed = dict[str, np.ndarray]
#: turns pairs into the padded batches the model is fed in serving
Encoder = Callable[[list[Pair]], list[Feed]]
PURPOSE = "The int8 mode (NNCF quantization for OpenVINO)"
TOP_K = 10


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


def quantize_graph(model: Any, calibration: list[Feed], validation: list[tuple[list[Feed], np.ndarray]],
                   max_drop: float) -> Any:
    """The OpenVINO ``model`` quantized to int8, with the ops that move the ranking kept unquantized."""
    nncf = require("nncf", "int8", PURPOSE)
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    def validate(compiled: Any, items: Any) -> tuple[float, list[float]]:
        values = [fidelity(logits(lambda f: compiled(f)[0], feeds), ref) for feeds, ref in items]
        return float(np.mean(values)), values

    return nncf.quantize_with_accuracy_control(
        model, nncf.Dataset(calibration), nncf.Dataset(validation, lambda item: item[0][0]), validate,
        max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calibration),
        # no SmoothQuant: accuracy control restores a reverted MatMul's original weights but leaves the
        # smoothing scale on its input, which changed the scores of a fully reverted model completely
        advanced_quantization_parameters=AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1)),
    )


def count_matmuls(model: Any) -> tuple[int, int]:
    """(MatMul ops, those fed an int8-quantized activation)."""
    total = quantized = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() == "MatMul":
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

    def declared(feeds: list[Feed]) -> list[Feed]:
        return [{k: v for k, v in feed.items() if k in names} for feed in feeds]

    core = ov.Core()
    exact = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    held_feeds = [declared(encode(group)) for group in held]
    validation = [(feeds, logits(lambda f: exact(f)[0], feeds)) for feeds in held_feeds]
    log.warning("int8: calibrating on %d pairs, measuring ranking fidelity on %d held-out queries (%d pairs), "
                "max_drop %s; this takes a while (once; cached)", len(calibrate), len(held),
                sum(len(g) for g in held), calibration.max_drop)
    quantized = quantize_graph(model, declared(encode(calibrate)), validation, calibration.max_drop)
    total, int8 = count_matmuls(quantized)
    serving = core.compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": serving_hint(bf16)})
    spearmans, overlaps = [], []
    for feeds, ref in validation:
        got = logits(lambda f: serving(f)[0], feeds)
        spearmans.append(spearman(got, ref))
        overlaps.append(overlap(got, ref))
    report = {
        "calibration_pairs": len(calibrate), "validation_queries": len(held),
        "validation_pairs": sum(len(g) for g in held), "max_drop": calibration.max_drop,
        "matmuls": total, "matmuls_int8": int8, "matmuls_kept_in_higher_precision": total - int8,
        "higher_precision": serving_hint(bf16),
        "fidelity": {"spearman_min": round(min(spearmans), 5), "spearman_mean": round(float(np.mean(spearmans)), 5),
                     f"top{TOP_K}_overlap_min": round(min(overlaps), 3)},
        "seconds": round(time.perf_counter() - started, 1),
    }
    log.warning("int8: %d of %d MatMul ops quantized, %d kept in %s; held-out fidelity: Spearman >= %.4f, top-%d "
                "overlap >= %.2f (%.0f s)", int8, total, total - int8, report["higher_precision"], min(spearmans),
                TOP_K, min(overlaps), report["seconds"])
    ov.save_model(quantized, str(staging / "model.xml"))
    (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")


def quantized_ir(onnx: Path, cache_dir: Path, calibration: Calibration, encode: Encoder, *, bf16: bool,
                 settings: str = "") -> tuple[Path, dict[str, Any]]:
    """The int8 IR of ``onnx`` for ``calibration`` and its report, made once and cached under ``cache_dir``.

    ``settings`` names what else the batches depend on (the tokenizer's limits).
    """
    ov = require("openvino", "int8", PURPOSE)
    nncf = require("nncf", "int8", PURPOSE)
    recipe = f"int8|{calibration.digest()}|{settings}|{serving_hint(bf16)}|ov {ov.__version__}|nncf {nncf.__version__}"
    target = derived_dir(onnx, cache_dir / "int8", recipe)
    if not (target / "report.json").is_file():
        publish(target, lambda staging: _fill(onnx, calibration, encode, bf16, staging))
    report: dict[str, Any] = json.loads((target / "report.json").read_text())
    return target / "model.xml", report


def int8_runtime(onnx: Path, cache_dir: Path, calibration: Calibration, encode: Encoder, *, threads: int | None,
                 pad_id: int, max_width: int, settings: str) -> tuple[Any, dict[str, Any]]:
    """An OpenVINO runtime on the int8 IR of ``onnx`` (quantized on first use), and its report."""
    from crossrank.runtime.openvino import OpenVinoRuntime
    from crossrank.runtime.select import has_native_bf16

    bf16 = has_native_bf16()
    path, report = quantized_ir(onnx, cache_dir, calibration, encode, bf16=bf16, settings=settings)
    runtime = OpenVinoRuntime(path, precision="bf16" if bf16 else "f32", threads=threads, pad_id=pad_id,
                              max_width=max_width, cache_dir=cache_dir / "openvino")
    runtime.providers = [f"OpenVINO CPU (int8, the rest {serving_hint(bf16)})"]
    return runtime, report


def summary(report: dict[str, Any]) -> str:
    """One line on what was quantized and the fidelity measured at calibration."""
    fid = report["fidelity"]
    return (f"int8 mode: {report['matmuls_int8']} of {report['matmuls']} MatMul ops int8, "
            f"{report['matmuls_kept_in_higher_precision']} kept in {report['higher_precision']}; on "
            f"{report['validation_queries']} held-out calibration queries Spearman >= {fid['spearman_min']}, "
            f"top-{TOP_K} overlap >= {fid[f'top{TOP_K}_overlap_min']}")
