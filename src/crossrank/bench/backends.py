"""The backends a benchmark compares: crossrank's modes and the installed Python peers.

Every backend scores one query against a list of documents and returns one relevance
score per document in input order, so that timings and scores compare like for like.
The peers run the same model: sentence-transformers loads the Hugging Face directory,
FastEmbed and FlashRank load the same ONNX file crossrank exported (FlashRank in the
dynamic-int8 form it ships its own models in).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.bench.inputs import calibration_pairs
from crossrank.extras import require
from crossrank.rerank import Reranker
from crossrank.runtime.calibration import CalibrationInput

log = logging.getLogger(__name__)

#: peers in the order they appear in tables
PEERS = ("sentence-transformers", "fastembed", "flashrank")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json")


@dataclass
class Backend:
    """A named scoring function, with what it is and how long it took to load.

    ``timer``, when given, returns the backend's own measure of its last call (a peer in
    another process times the call there, without the transfer); ``close`` ends what the
    backend started; ``info`` goes into the JSON report (package versions...).
    """

    name: str
    label: str
    score: Callable[[str, list[str]], np.ndarray]
    load_seconds: float = 0.0
    timer: Callable[[], float] | None = None
    close: Callable[[], None] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSource:
    """One model in the layouts the backends need: HF directory and exported ONNX file."""

    directory: Path
    onnx_path: Path


_RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO", "torch": "PyTorch"}
_PRECISION_NAMES = {"f32": "fp32", "f16": "fp16", "bf16": "bf16", "int8": "int8"}


def crossrank_backend(
    model: str | Path, mode: str, threads: int | None, cache_dir: Path | None, device: str = "cpu",
    calibration: CalibrationInput | None = None,
) -> Backend:
    """crossrank in ``mode``; the int8 mode calibrates on ``calibration`` (default: the benchmark's own pairs,
    never timed: :func:`~crossrank.bench.inputs.calibration_pairs`)."""
    providers = ["cuda"] if device == "cuda" else None
    if mode == "int8" and calibration is None:
        calibration = calibration_pairs()
    reranker = Reranker(model, mode=mode, threads=threads, cache_dir=cache_dir, providers=providers,  # type: ignore[arg-type]
                        calibration=calibration if mode == "int8" else None)
    choice = reranker.choice
    on_gpu = choice.device == "cuda" or reranker.runtime.providers[0] == "CUDAExecutionProvider"
    label = f"{_PRECISION_NAMES[choice.precision]} {_RUNTIME_NAMES[choice.runtime]}{' CUDA' if on_gpu else ''}"
    if mode == "auto":  # auto always resolves to another mode: say which, and why
        log.warning("crossrank mode 'auto' runs as %r (%s)", reranker.mode, choice.reason)
    elif reranker.mode != mode:
        log.warning("crossrank mode %r is not available here (%s); it runs as %r", mode, choice.reason, reranker.mode)
    return Backend(f"crossrank-{mode}", f"crossrank {mode} ({label})", lambda query, docs: reranker.score(query, docs))


def sentence_transformers_backend(source: ModelSource, threads: int | None, work: Path, device: str = "cpu") -> Backend:
    st = require("sentence_transformers", "bench", "Comparing with sentence-transformers")
    torch = require("torch", "bench", "Comparing with sentence-transformers")
    if threads:
        torch.set_num_threads(int(threads))
    model = st.CrossEncoder(str(source.directory), device=device)

    def score(query: str, docs: list[str]) -> np.ndarray:
        return np.asarray(model.predict([(query, d) for d in docs], batch_size=32, show_progress_bar=False))

    on_gpu = " CUDA" if device == "cuda" else ""
    return Backend("sentence-transformers", f"sentence-transformers CrossEncoder (torch fp32{on_gpu})", score)


def _peer_dir(source: ModelSource, target: Path, onnx_name: str) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in _TOKENIZER_FILES:
        if (source.directory / name).is_file():
            shutil.copy(source.directory / name, target / name)
    config = target / "tokenizer_config.json"
    settings: dict[str, Any] = json.loads(config.read_text()) if config.is_file() else {}
    if "model_max_length" not in settings or settings["model_max_length"] > 100_000:
        settings["model_max_length"] = 512  # both peers read their truncation limit here
    config.write_text(json.dumps(settings))
    (target / onnx_name).parent.mkdir(parents=True, exist_ok=True)
    return target / onnx_name


def fastembed_backend(source: ModelSource, threads: int | None, work: Path, device: str = "cpu") -> Backend:
    require("fastembed", "bench", "Comparing with FastEmbed")
    from fastembed.rerank.cross_encoder import TextCrossEncoder

    directory = work / "fastembed"
    onnx = _peer_dir(source, directory, "onnx/model.onnx")
    shutil.copy(source.onnx_path, onnx)
    model = TextCrossEncoder("Xenova/ms-marco-MiniLM-L-6-v2", specific_model_path=str(directory), threads=threads)

    def score(query: str, docs: list[str]) -> np.ndarray:
        logits = np.asarray(list(model.rerank(query, docs, batch_size=64)), dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-logits))  # FastEmbed returns logits; the others sigmoid scores

    return Backend("fastembed", "FastEmbed TextCrossEncoder (ONNX fp32)", score)


def flashrank_backend(source: ModelSource, threads: int | None, work: Path, device: str = "cpu") -> Backend:
    require("flashrank", "bench", "Comparing with FlashRank")
    from flashrank import Ranker, RerankRequest
    from onnxruntime.quantization import QuantType, quantize_dynamic

    name = "ms-marco-MiniLM-L-12-v2"  # a catalogue name FlashRank accepts; the files are ours
    onnx = _peer_dir(source, work / "flashrank" / name, "flashrank-MiniLM-L-12-v2_Q.onnx")
    if not onnx.is_file():
        logging.disable(logging.WARNING)  # the quantizer's advice about pre-processing
        try:
            quantize_dynamic(str(source.onnx_path), str(onnx), weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
    ranker = Ranker(model_name=name, cache_dir=str(work / "flashrank"), max_length=512, log_level="WARNING")

    def score(query: str, docs: list[str]) -> np.ndarray:
        results = ranker.rerank(RerankRequest(query=query, passages=[{"id": i, "text": d} for i, d in enumerate(docs)]))
        out = np.empty(len(docs), dtype=np.float64)
        for item in results:
            out[item["id"]] = item["score"]
        return out

    return Backend("flashrank", "FlashRank (ONNX dynamic int8)", score)


#: peers that can run on a CUDA GPU here (FastEmbed and FlashRank need onnxruntime-gpu)
GPU_PEERS = ("sentence-transformers",)

PEER_FACTORIES: dict[str, Callable[[ModelSource, int | None, Path, str], Backend]] = {
    "sentence-transformers": sentence_transformers_backend,
    "fastembed": fastembed_backend,
    "flashrank": flashrank_backend,
}
