"""Choose the runtime for a reranker mode: exact (fp32 ONNX Runtime) or fast (bf16 OpenVINO).

``exact`` gives the scores of the original model (within 1e-4 of ``transformers``).
``fast`` runs the same ONNX graph with OpenVINO in bfloat16 on CPUs with native bf16
instructions (AMX or AVX-512 BF16), several times faster and ranking-preserving; elsewhere
it falls back to ``exact`` with a message. ``auto`` is ``fast`` when the CPU supports bf16,
the ``openvino`` package is installed and no GPU provider was asked for; else ``exact``.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from crossrank.errors import InvalidInput

log = logging.getLogger(__name__)

Mode = Literal["exact", "fast", "auto"]
RuntimeName = Literal["onnxruntime", "openvino"]
MODES = ("exact", "fast", "auto")
RUNTIMES = ("onnxruntime", "openvino")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@lru_cache(maxsize=1)
def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo is absent)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU computes bf16 natively (AMX tiles or AVX-512 BF16)."""
    return any(flag in (cpu_flags() if flags is None else flags) for flag in BF16_FLAGS)


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


@dataclass(frozen=True)
class Choice:
    """The runtime a reranker will use and why."""

    mode: Literal["exact", "fast"]
    runtime: RuntimeName
    precision: Literal["f32", "bf16"]
    reason: str


def _gpu_requested(providers: Sequence[str] | None) -> bool:
    return any(p.lower().removesuffix("executionprovider") in ("cuda", "tensorrt") for p in providers or ())


def choose_runtime(
    mode: str,
    runtime: str | None = None,
    providers: Sequence[str] | None = None,
    *,
    flags: frozenset[str] | None = None,
    openvino_available: bool | None = None,
) -> Choice:
    """Resolve ``mode`` (and an optional forced ``runtime``) to a concrete runtime."""
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {MODES}, got {mode!r}")
    if runtime is not None and runtime not in RUNTIMES:
        raise InvalidInput(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    have_ov = openvino_installed() if openvino_available is None else openvino_available
    bf16 = has_native_bf16(flags)
    if runtime == "onnxruntime":
        if mode == "fast":
            log.warning("mode='fast' with runtime='onnxruntime' runs in fp32 (ONNX Runtime has no safe fast path)")
        return Choice("exact", "onnxruntime", "f32", "runtime forced to onnxruntime")
    if runtime == "openvino":
        # an explicit OpenVINO request fails loudly (MissingExtra) when the package is absent
        precision: Literal["f32", "bf16"] = "f32" if mode == "exact" or not bf16 else "bf16"
        return Choice("fast" if precision == "bf16" else "exact", "openvino", precision, "runtime forced to openvino")
    if mode == "exact":
        return Choice("exact", "onnxruntime", "f32", "exact mode")
    if _gpu_requested(providers):
        return Choice("exact", "onnxruntime", "f32", "a GPU provider was requested; OpenVINO runs on CPU only")
    if not bf16:
        if mode == "fast":
            log.warning("mode='fast': this CPU has no native bf16 (AMX or AVX-512 BF16); using exact fp32")
        return Choice("exact", "onnxruntime", "f32", "no native bf16 on this CPU")
    if not have_ov:
        if mode == "fast":
            log.warning(
                "mode='fast' needs the optional package 'openvino'; using exact fp32 ONNX Runtime. "
                "Install it with: pip install 'crossrank[fast]'"
            )
        return Choice("exact", "onnxruntime", "f32", "openvino is not installed (pip install 'crossrank[fast]')")
    return Choice("fast", "openvino", "bf16", "native bf16 CPU and openvino installed")
