"""ONNX Runtime session wrapper: feeds only the inputs the graph declares."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from crossrank.errors import InvalidInput, ModelError
from crossrank.runtime.base import check_max_batch_tokens, tokens_per_threads
from crossrank.tokenize import plan_batches

log = logging.getLogger(__name__)

_PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
#: tokens per batch (rows x padded length) per inference thread. Small batches keep the
#: activations in the cores' caches, but each batch streams all the weights again; on a 2-core
#: EPYC, 384 matched or beat 256 everywhere and 100 passages ran 1.09x faster
#: (docs/PERFORMANCE.md#exact-mode-batch-budget)
TOKENS_PER_THREAD = 384


def select_providers(requested: Sequence[str] | None) -> list[str]:
    """Map short names to ONNX Runtime providers; unavailable ones fall back to CPU with a warning."""
    if not requested:
        return ["CPUExecutionProvider"]
    available = set(ort.get_available_providers())
    chosen = []
    for name in requested:
        provider = _PROVIDER_NAMES.get(name.lower(), name)
        if provider in available:
            chosen.append(provider)
        elif provider.endswith("ExecutionProvider"):
            log.warning("%s is not available in this onnxruntime build; falling back to CPU", provider)
        else:
            raise InvalidInput(f"unknown provider {name!r}; use one of {sorted(_PROVIDER_NAMES)}")
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


class OnnxRuntime:
    """One inference session; ``run`` is safe to call from several threads.

    ``max_batch_tokens`` bounds the tokens of one call, padding counted (default: on the CPU
    :data:`TOKENS_PER_THREAD` per thread; on an accelerator no bound, as it wants large batches).
    """

    def __init__(
        self,
        path: Path,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        output: str | None = None,
        max_batch_tokens: int | None = None,
    ) -> None:
        max_batch_tokens = check_max_batch_tokens(max_batch_tokens)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # ORT's default spinning (idle workers spin a while before they sleep). Bounding the
        # spin (session.intra_op.spin_duration_us, any value tried: 200 µs, 2 ms) made 1 title
        # bimodal on 2 cores, 9.6 ms median against 4.2 ms, with no gain at 1 passage or 10
        # titles; never spinning cost 1.2-1.5x at 1-10 documents on a quiet machine
        # (docs/PERFORMANCE.md#onnx-runtime-worker-spinning)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=select_providers(providers))
        except Exception as exc:
            raise ModelError(
                f"could not load the ONNX model {path}: {str(exc).strip()[:300]}. The file may be "
                f"corrupt or incomplete: delete it (or its cache directory) and load the model again."
            ) from exc
        inputs = {i.name: i for i in self.session.get_inputs()}
        if "input_ids" not in inputs:
            raise ModelError(f"{path} does not take input_ids; inputs are {sorted(inputs)}")
        self.input_names = list(inputs)
        self.input_dtypes = {name: _DTYPES.get(i.type, np.int64) for name, i in inputs.items()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        self.output: str = output if output is not None and output in outputs else next(iter(outputs))
        #: the chosen output's declared shape: ints, and names or None for dynamic axes
        self.output_shape: list[int | str | None] = list(outputs[self.output].shape)
        self.path = path
        self.providers: list[str] = list(self.session.get_providers())
        on_cpu = self.providers[0] == "CPUExecutionProvider"  # accelerators want large batches: no default bound
        #: most tokens per call, padding counted (None: no bound)
        self.max_batch_tokens: int | None = max_batch_tokens or (
            tokens_per_threads(TOKENS_PER_THREAD, threads) if on_cpu else None)

    name = "onnxruntime"

    def plan(self, lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
        """Length-sorted batches of at most ``batch_size`` rows and ``max_batch_tokens`` tokens."""
        return plan_batches(lengths, batch_size, self.max_batch_tokens)

    def run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        """Run the graph on the arrays it declares; returns the chosen (default: first) output."""
        inputs = {}
        for name in self.input_names:
            if name not in feed:
                raise ModelError(f"the model needs input {name!r}, which crossrank does not produce")
            inputs[name] = feed[name].astype(self.input_dtypes[name], copy=False)
        return np.asarray(self.session.run([self.output], inputs)[0])
