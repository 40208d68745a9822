"""OpenVINO runtime: reads the same ONNX file, runs it in bf16 where the CPU supports it.

OpenVINO prepares kernels for each input shape it meets, and a shape it has not seen costs
more than a warm call. This runtime therefore keeps the set of shapes bounded: sequence
lengths are rounded up by :func:`padded_width` (to within an eighth of the length, at most
:data:`LENGTH_STEP`) and batches hold a power-of-two number of rows (see
:func:`plan_power_of_two`, within a token budget), so a few hundred shapes cover every request.

Batches hold at most :data:`TOKENS_PER_THREAD` tokens per inference thread, which also keeps
the activation buffers a long-running process holds small; with glibc a server can trim them
further with ``MALLOC_MMAP_THRESHOLD_`` (docs/SERVER.md#memory-of-a-long-running-fast-mode-server).

In bf16 the graph is first converted to OpenVINO IR with fp16 weights (once, cached; see
:func:`compressed_ir`), which keeps the resident size down.

Needs the optional ``openvino`` package: ``pip install 'crossrank[fast]'``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from crossrank.errors import ModelError
from crossrank.extras import require
from crossrank.models.derived import derived_dir, publish
from crossrank.runtime.base import check_max_batch_tokens, tokens_per_threads

log = logging.getLogger(__name__)

Precision = Literal["bf16", "f32"]
#: the coarsest rounding of sequence lengths (masked tokens do not change scores)
LENGTH_STEP = 16
#: tokens per batch (rows x padded length) per inference thread. Against batches of up to 32
#: rows whatever their length, on a 2-core EPYC in bf16: 100 documents of mixed length 1.12x
#: faster, 32 documents of ~380 tokens 1.25x, titles, passages and 512-token windows level;
#: peak RSS for 32 windows of 512 tokens 420 -> 228 MiB (docs/PERFORMANCE.md#fast-mode-batch-budget)
TOKENS_PER_THREAD = 1024


def padded_width(width: int) -> int:
    """``width`` rounded up to a multiple of a step that grows with it: at most 1/8 padding.

    Steps are 1 below 16 tokens, then 2, 4, 8 and, from 128 tokens, :data:`LENGTH_STEP`:
    64 widths up to 512. Titles of 21-29 tokens, which rounding to 16 padded to 32, ran
    1.10-1.17x faster (docs/PERFORMANCE.md#fast-mode-length-rounding).
    """
    step = min(LENGTH_STEP, 1 << max(int(width).bit_length() - 4, 0))
    return width + (-width % step)


def plan_power_of_two(lengths: np.ndarray, batch_size: int, max_tokens: int | None = None) -> list[np.ndarray]:
    """Length-sorted batches whose row counts are powers of two (at most ``batch_size``).

    100 rows with ``batch_size=32`` become 32 + 32 + 32 + 4: no padding rows are added, and
    the number of distinct batch shapes stays bounded by log2(batch_size) + 1. With
    ``max_tokens``, a batch is halved until its rows times their :func:`padded_width` fit
    (one row always fits).
    """
    order = np.argsort(lengths, kind="stable")
    cap = 1 << max(int(batch_size), 1).bit_length() - 1
    batches = []
    start = 0
    while start < len(order):
        size = min(cap, 1 << (len(order) - start).bit_length() - 1)
        if max_tokens is not None:
            while size > 1 and size * padded_width(int(lengths[order[start + size - 1]])) > max_tokens:
                size //= 2
        batches.append(order[start : start + size])
        start += size
    return batches


def compressed_ir(onnx: Path, cache_dir: Path) -> Path:
    """``onnx`` as OpenVINO IR with fp16 weights, converted once and kept under ``cache_dir``.

    For the bf16 mode only: the weights are rounded to bf16 at compile time anyway, and a
    model compiled from fp16 weights keeps no fp32 copy of them, which cut the fast mode's
    resident size by about 70 MiB for MiniLM-L6 (same speed, same scores to 1e-3).
    """
    ov = require("openvino", "fast", "The fast mode (OpenVINO runtime)")
    target = derived_dir(onnx, cache_dir / "ir", f"{ov.__version__}|fp16")
    if not (target / "model.xml").is_file():
        log.warning("converting %s to OpenVINO IR with fp16 weights (once; cached in %s)", onnx, target)
        publish(target, lambda staging: ov.save_model(
            ov.convert_model(str(onnx)), str(staging / "model.xml"), compress_to_fp16=True
        ))
    return target / "model.xml"


class OpenVinoRuntime:
    """An OpenVINO CPU model; ``run`` is safe from several threads (one request per thread)."""

    name = "openvino"

    def __init__(
        self,
        path: Path,
        *,
        precision: Precision = "bf16",
        threads: int | None = None,
        output: str | None = None,
        cache_dir: Path | None = None,
        pad_id: int = 0,
        max_width: int | None = None,
        round_width: Callable[[int], int] = padded_width,
        max_batch_tokens: int | None = None,
    ) -> None:
        max_batch_tokens = check_max_batch_tokens(max_batch_tokens)
        ov = require("openvino", "fast", "The fast mode (OpenVINO runtime)")
        self.path = path
        self.precision = precision
        self.pad_id = int(pad_id)
        self.max_width = max_width
        self.round_width = round_width
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if cache_dir is not None:
            config["CACHE_DIR"] = str(cache_dir)  # compiled blobs: faster second load
        core = ov.Core()
        try:
            # an IR (the int8 mode's) is read as it is
            bf16_onnx = precision == "bf16" and cache_dir is not None and path.suffix == ".onnx"
            source = compressed_ir(path, cache_dir) if bf16_onnx and cache_dir is not None else path
            # compiled from the file, not from a read_model() object: with CACHE_DIR a second
            # load then skips reading the graph, and no graph copy stays resident
            self.compiled = core.compile_model(str(source), "CPU", config)
        except Exception as exc:
            raise ModelError(f"OpenVINO could not load {path}: {str(exc).strip()[:300]}") from exc
        self.input_names = [p.get_any_name() for p in self.compiled.inputs]
        if "input_ids" not in self.input_names:
            raise ModelError(f"{path} does not take input_ids; inputs are {sorted(self.input_names)}")
        outputs = [p.get_any_name() for p in self.compiled.outputs]
        index = outputs.index(output) if output in outputs else 0
        self._output = self.compiled.outputs[index]
        self.output = outputs[index]
        #: the chosen output's declared shape: ints, and None for dynamic axes
        self.output_shape: list[int | str | None] = [
            d.get_length() if d.is_static else None for d in self._output.get_partial_shape()
        ]
        self.providers = [f"OpenVINO CPU ({precision})"]
        #: most tokens per call, padding counted (each row's :func:`padded_width`)
        self.max_batch_tokens: int = max_batch_tokens or tokens_per_threads(TOKENS_PER_THREAD, threads)
        self._local = threading.local()

    def _request(self) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def plan(self, lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
        return plan_power_of_two(lengths, batch_size, self.max_batch_tokens)

    def run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        """Run on the declared inputs, padding the sequence axis as ``round_width`` says."""
        width = feed["input_ids"].shape[1]
        target = self.round_width(width)
        extra = max((min(target, self.max_width) if self.max_width else target) - width, 0)
        inputs = {}
        for name in self.input_names:
            if name not in feed:
                raise ModelError(f"the model needs input {name!r}, which crossrank does not produce")
            array = feed[name].astype(np.int64, copy=False)
            if extra:  # pad ids (not 0): XLM-R derives positions from the pad id
                fill = self.pad_id if name == "input_ids" else 0
                array = np.pad(array, ((0, 0), (0, extra)), constant_values=fill)
            inputs[name] = array
        # start_async + wait rather than infer(): the same work, 0.5-0.6 ms faster for a single
        # title after an idle moment and equal elsewhere
        # (docs/PERFORMANCE.md#openvino-asynchronous-requests)
        request = self._request()
        request.start_async(inputs)
        request.wait()
        return np.array(request.get_tensor(self._output).data, dtype=np.float32)
