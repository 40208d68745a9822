"""The OpenVINO engine of ``mode="int8"``: NNCF static quantization (SmoothQuant), calibrated on the user's pairs.

The first-token ONNX graph is converted to OpenVINO and quantized by ``nncf.quantize``
(``ModelType.TRANSFORMER``, which applies SmoothQuant: on the trained-body MiniLM-L6 it raised the
held-out fidelity of a fully quantized model from 0.94 to 0.98); activations are calibrated on the
user's own pairs. The search keeps more and more matrix-op groups in higher precision (see
:func:`_matmul_groups`: none, the feed-forward down projections, plus attention's own products, all
but the up projections, every one) until the ranking bound holds. What stays unquantized runs in
bf16 where the CPU computes bf16 natively, else in fp32. It pays off where the CPU has VNNI or AMX
(on a Xeon with AMX, 3.4x / 4.0x sentence-transformers); on AVX2 alone it measured slower than fp32.

Why not ``nncf.quantize_with_accuracy_control``: it ranks each of the ~46 quantized ops of a
MiniLM-L6 one by one and re-ranks after each revert (over 15 minutes on 2 cores, unfinished), and
it reverts a MatMul's weights but not the SmoothQuant scale on its input (a fully reverted model
scored nothing like the original). A group search costs at most four quantization passes.

Needs ``pip install 'crossrank[int8]'`` (``openvino`` and ``nncf``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.extras import require

log = logging.getLogger(__name__)

Feed = dict[str, np.ndarray]
Run = Callable[[Feed], Any]
PURPOSE = "The int8 mode's OpenVINO engine (NNCF static quantization)"
#: the ops that multiply matrices, which int8 speeds up (attention may be one fused op)
MATRIX_OPS = ("MatMul", "ScaledDotProductAttention")


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


def quantize_graph(model: Any, calibration: list[Feed], accept: Callable[[Any], tuple[bool, dict[str, Any], Run]],
                   overflow_fix: str) -> tuple[Any, dict[str, Any], Run, list[str]]:
    """The OpenVINO ``model`` quantized to int8, keeping the fewest matrix-op groups in higher precision
    (:func:`_matmul_groups`) with which ``accept(quantized)`` holds (every one kept when none does), with what
    ``accept`` measured, the run it compiled and the names of the ops kept."""
    nncf = require("nncf", "int8", PURPOSE)
    steps = _matmul_groups(model)
    for number, (kept, names) in enumerate(steps, 1):
        log.warning("int8 (OpenVINO): quantizing with %s kept in higher precision (step %d of at most %d)", kept,
                    number, len(steps))
        quantized = nncf.quantize(
            model.clone(), nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration), ignored_scope=nncf.IgnoredScope(names=names, validate=False),
            advanced_parameters=nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix(overflow_fix)),
        )
        ok, measured, run = accept(quantized)
        log.warning("int8 (OpenVINO): %s kept: fidelity %.4f (Spearman >= %.4f, top-10 overlap >= %.2f)%s", kept,
                    measured["fidelity"], measured["spearman_min"], measured["top10_overlap_min"],
                    "; accepted" if ok else "; below the bound")
        if ok or number == len(steps):
            return quantized, measured, run, list(names)
    raise AssertionError("unreachable")


def count_matrix_ops(model: Any) -> tuple[int, int]:
    """(matrix ops, those fed an int8-quantized activation)."""
    total = quantized = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() in MATRIX_OPS:
            total += 1
            sources = [op.input_value(i).get_node().get_type_name() for i in range(op.get_input_size())]
            quantized += "FakeQuantize" in sources
    return total, quantized


def search(onnx: Path, calibration: list[Feed], measure: Callable[[Run], tuple[bool, dict[str, Any]]], *,
           bf16: bool, overflow_fix: str, threads: int | None) -> tuple[Any, dict[str, Any], Run]:
    """The quantized OpenVINO model of ``onnx`` that keeps the fewest op groups in higher precision with which
    ``measure(run)`` holds, ``{"matrix_ops", "matrix_ops_int8", "kept", "fidelity"}`` (``kept``: the names of
    the ops kept in higher precision), and its run (compiled as it will be served, on ``threads``)."""
    ov = require("openvino", "int8", PURPOSE)
    model = ov.convert_model(str(onnx))
    names = {p.get_any_name() for p in model.inputs}
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": serving_hint(bf16), **({"INFERENCE_NUM_THREADS": threads} if threads else {})}

    def accept(quantized: Any) -> tuple[bool, dict[str, Any], Run]:
        serving = core.compile_model(quantized, "CPU", config)

        def run(feed: Feed) -> Any:
            return serving({k: v for k, v in feed.items() if k in names})[0]

        return (*measure(run), run)

    quantized, found, run, kept = quantize_graph(
        model, [{k: v for k, v in f.items() if k in names} for f in calibration], accept, overflow_fix)
    total, int8 = count_matrix_ops(quantized)
    return quantized, {"matrix_ops": total, "matrix_ops_int8": int8, "kept": kept, "fidelity": found}, run
