"""Build the runtime a :class:`~crossrank.Reranker`'s :class:`~crossrank.runtime.select.Choice` names.

The CPU runtimes run the first-token cut of the model's ONNX graph (same scores, less work);
``mode="auto"`` times fast against exact here once (:mod:`crossrank.runtime.auto`);
``mode="int8"`` quantizes on the calibration pairs, tokenized as the reranker serves them
(:mod:`crossrank.runtime.int8`). Each inference library is imported only when its runtime is
built, so a process loads one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.models.load import LoadedModel
from crossrank.runtime.base import Runtime
from crossrank.runtime.calibration import Calibration
from crossrank.runtime.select import Choice

#: turns calibration pairs into the padded batches the model is fed in serving
Batches = Callable[[list[tuple[str, str]]], list[dict[str, np.ndarray]]]


@dataclass(frozen=True)
class RuntimeSpec:
    """What every runtime of one loaded model is built with."""

    loaded: LoadedModel
    providers: Sequence[str] | None
    threads: int | None
    cache_root: Path  #: exports, cut graphs, OpenVINO blobs and int8 models live under it
    pad_id: int
    max_width: int  #: the tokenizer's max_length: OpenVINO never pads rows beyond it
    max_batch_tokens: int | None


def make_runtime(spec: RuntimeSpec, choice: Choice) -> Runtime:
    """The exact, fast or torch runtime of ``choice`` (int8: :func:`make_int8_runtime`)."""
    loaded = spec.loaded
    if choice.runtime == "torch" and choice.precision != "int8":
        from crossrank.runtime.torch import TorchRuntime

        return TorchRuntime(
            loaded.files.directory, device=choice.device, precision=choice.precision, threads=spec.threads,
            head=loaded.head, trust_remote_code=loaded.trust_remote_code, max_batch_tokens=spec.max_batch_tokens,
        )
    path = _cut_graph(spec)
    if choice.runtime == "openvino":
        from crossrank.runtime.openvino import OpenVinoRuntime

        return OpenVinoRuntime(
            path, precision="bf16" if choice.precision == "bf16" else "f32", threads=spec.threads,
            pad_id=spec.pad_id, max_width=spec.max_width, cache_dir=spec.cache_root / "openvino",
            max_batch_tokens=spec.max_batch_tokens,
        )
    from crossrank.runtime.onnx import OnnxRuntime  # imported here: the fast mode never loads it

    return OnnxRuntime(path, providers=spec.providers, threads=spec.threads, max_batch_tokens=spec.max_batch_tokens)


def make_int8_runtime(spec: RuntimeSpec, calibration: Calibration, batches: Batches,
                      engine: str | None = None) -> tuple[Runtime, dict[str, Any], str]:
    """The int8 runtime, quantized on ``calibration`` (once; cached) by ``engine`` or the one measured fastest,
    its report and a line saying what it kept."""
    from crossrank.runtime.int8 import int8_runtime, summary

    runtime, report = int8_runtime(
        _cut_graph(spec), spec.cache_root, calibration, batches, threads=spec.threads, pad_id=spec.pad_id,
        max_width=spec.max_width, settings=f"max_length={spec.max_width}", engine=engine,
        max_batch_tokens=spec.max_batch_tokens)
    return runtime, report, summary(report)


def measure_auto(spec: RuntimeSpec, choice: Choice, fast: Runtime) -> tuple[Runtime, Choice]:
    """``mode="auto"``: the OpenVINO runtime ``fast`` (bf16 where the CPU has it natively, else fp32) where it
    measured faster than exact ONNX Runtime here (cached verdict), else exact."""
    from crossrank.runtime.auto import ChoiceCache, choice_key, measured_mode

    exact = Choice("exact", "onnxruntime", "f32", "")
    made: list[Runtime] = []

    def make_exact() -> Callable[[Mapping[str, np.ndarray]], np.ndarray]:
        made.append(make_runtime(spec, exact))
        return made[0].run

    cache = ChoiceCache(spec.cache_root / "auto-choice.json")
    verdict = measured_mode(choice_key(spec.loaded.onnx_path, spec.threads), cache, fast.run, make_exact,
                            spec.loaded.tokenizer.get_vocab_size(), spec.pad_id)
    name = "fast" if choice.precision == "bf16" else "OpenVINO f32"
    why = f"mode='auto' measured here: {name} {verdict['fast_ms']} ms, exact {verdict['exact_ms']} ms on the probe"
    if verdict["mode"] == "exact":
        return (made[0] if made else make_runtime(spec, exact)), replace(exact, reason=why)
    return fast, replace(choice, reason=why)


def _cut_graph(spec: RuntimeSpec) -> Path:
    from crossrank.models.first_token import first_token_graph

    return first_token_graph(spec.loaded.onnx_path, spec.cache_root / "first-token")
