"""Choose the runtime for a reranker mode: exact (fp32) or fast (bf16 on CPU, fp16 on GPU).

On the CPU, ``exact`` runs fp32 ONNX Runtime and gives the scores of the original model
(within 1e-4 of ``transformers``); ``fast`` runs the same ONNX graph with OpenVINO in
bfloat16 on CPUs with native bf16 instructions (AMX or AVX-512 BF16), several times faster
and ranking-preserving; elsewhere it falls back to ``exact`` with a message. ``auto`` is
``fast`` or ``exact``, whichever measured faster here (:mod:`crossrank.runtime.auto`) where fast is available, else ``exact``.
``int8`` runs int8 matrix products calibrated on the user's pairs, the ops that move the ranking kept
in higher precision, on ONNX Runtime or OpenVINO, whichever measured faster here
(:mod:`crossrank.runtime.int8`; CPU only, encoder cross-encoders).

With ``providers=["cuda"]`` the GPU is used: ``fast`` (and ``auto``) run the model in fp16
with PyTorch on CUDA; ``exact`` runs fp32, on ONNX Runtime's CUDA provider when that build
is installed, else with PyTorch. Without a usable GPU it falls back to the CPU with a
warning. ``runtime`` forces one of :data:`RUNTIMES`.
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

Mode = Literal["exact", "fast", "auto", "int8"]
RuntimeName = Literal["onnxruntime", "openvino", "torch"]
Precision = Literal["f32", "bf16", "f16", "int8"]
MODES = ("exact", "fast", "auto", "int8")
RUNTIMES = ("onnxruntime", "openvino", "torch")
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

    mode: Literal["exact", "fast", "int8"]
    runtime: RuntimeName
    precision: Precision
    reason: str
    device: str = "cpu"  #: where the torch runtime runs ("cpu" or "cuda")


def _gpu_requested(providers: Sequence[str] | None) -> bool:
    return any(p.lower().removesuffix("executionprovider") in ("cuda", "tensorrt") for p in providers or ())


def ort_cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _torch_choice(mode: str, cuda: bool, bf16: bool, reason: str) -> Choice:
    if cuda:
        precision: Precision = "f32" if mode == "exact" else "f16"
        return Choice("exact" if precision == "f32" else "fast", "torch", precision, reason, "cuda")
    precision = "bf16" if mode != "exact" and bf16 else "f32"
    return Choice("exact" if precision == "f32" else "fast", "torch", precision, reason, "cpu")


def check_threads(threads: int | None) -> int | None:
    """``None`` (every core) or a whole number of threads, at least 1."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InvalidInput(f"threads must be a whole number >= 1 (omit it to use every core), got {threads!r}")
    return threads


def choose_runtime(
    mode: str,
    runtime: str | None = None,
    providers: Sequence[str] | None = None,
    *,
    flags: frozenset[str] | None = None,
    openvino_available: bool | None = None,
    cuda_available: bool | None = None,
    ort_cuda: bool | None = None,
) -> Choice:
    """Resolve ``mode`` (and an optional forced ``runtime``) to a concrete runtime.

    ``flags``, ``openvino_available``, ``cuda_available`` (torch sees a GPU) and
    ``ort_cuda`` (ONNX Runtime has its CUDA provider) override what this machine reports.
    """
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {MODES}, got {mode!r}")
    if runtime is not None and runtime not in RUNTIMES:
        raise InvalidInput(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if mode == "int8":
        if runtime not in (None, "onnxruntime", "openvino") or _gpu_requested(providers):
            raise InvalidInput("mode='int8' runs on the CPU with ONNX Runtime or OpenVINO (quantized, calibrated); "
                               "for a GPU or another runtime use mode 'exact' or 'fast'")
        engine: RuntimeName = "openvino" if runtime == "openvino" else "onnxruntime"
        return Choice("int8", engine, "int8", "int8 mode: calibrated quantization")
    have_ov = openvino_installed() if openvino_available is None else openvino_available
    bf16 = has_native_bf16(flags)
    gpu = _gpu_requested(providers)
    if runtime == "torch" or (runtime is None and gpu):
        from crossrank.runtime.torch import cuda_available as torch_sees_cuda

        cuda = torch_sees_cuda() if cuda_available is None else cuda_available
        if runtime == "torch":
            return _torch_choice(mode, cuda and (gpu or not providers), bf16, "runtime forced to torch")
        on_ort = ort_cuda_available() if ort_cuda is None else ort_cuda
        if cuda and not (mode == "exact" and on_ort):
            return _torch_choice(mode, True, bf16, "a GPU was requested and torch sees one")
        if not on_ort:
            log.warning(
                "a GPU was requested, but neither torch nor onnxruntime sees a CUDA GPU here; running on the "
                "CPU (install a CUDA build of torch with 'crossrank[torch]', or onnxruntime-gpu)"
            )
        elif mode == "fast":
            log.warning("mode='fast' on ONNX Runtime's CUDA provider runs fp32; install 'crossrank[torch]' for fp16")
        return Choice("exact", "onnxruntime", "f32", "a GPU was requested: ONNX Runtime's CUDA provider")
    if runtime == "onnxruntime":
        if mode == "fast":
            log.warning("mode='fast' with runtime='onnxruntime' runs in fp32 (ONNX Runtime has no safe fast path)")
        return Choice("exact", "onnxruntime", "f32", "runtime forced to onnxruntime")
    if runtime == "openvino":
        # an explicit OpenVINO request fails loudly (MissingExtra) when the package is absent
        precision: Precision = "f32" if mode == "exact" or not bf16 else "bf16"
        return Choice("fast" if precision == "bf16" else "exact", "openvino", precision, "runtime forced to openvino")
    if mode == "exact":
        return Choice("exact", "onnxruntime", "f32", "exact mode")
    if not bf16:
        if mode == "fast":
            log.warning("mode='fast': this CPU has no native bf16 (AMX or AVX-512 BF16); using exact fp32")
        if mode == "auto" and have_ov:  # both fp32: the load times OpenVINO against ONNX Runtime here
            return Choice("exact", "openvino", "f32", "no native bf16 on this CPU: fp32, on the runtime that "
                          "measures faster here")
        return Choice("exact", "onnxruntime", "f32", "no native bf16 on this CPU")
    if not have_ov:
        if mode == "fast":
            log.warning(
                "mode='fast' needs the optional package 'openvino'; using exact fp32 ONNX Runtime. "
                "Install it with: pip install 'crossrank[fast]'"
            )
        return Choice("exact", "onnxruntime", "f32", "openvino is not installed (pip install 'crossrank[fast]')")
    return Choice("fast", "openvino", "bf16", "native bf16 CPU and openvino installed")
