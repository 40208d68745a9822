"""Latency benchmarks: crossrank's modes against the installed Python peers, same inputs.

>>> from crossrank.bench import prepare_backends, run_bench  # doctest: +SKIP
>>> result = run_bench(prepare_backends(model_dir, modes=("exact", "fast"), peers=("fastembed",)))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from crossrank.bench.backends import GPU_PEERS, PEER_FACTORIES, PEERS, Backend, ModelSource, crossrank_backend
from crossrank.bench.inputs import Workload, make_workload
from crossrank.bench.peer_env import VENV_PEERS, venv_peer_backends
from crossrank.bench.runner import BenchResult, Cell, run_bench
from crossrank.bench.shapes import SHAPES, bench_model
from crossrank.errors import InvalidInput, MissingExtra
from crossrank.models.load import load_model
from crossrank.runtime.calibration import CalibrationInput

log = logging.getLogger(__name__)
#: every peer name ``--peers`` takes, in table order
ALL_PEERS = [PEERS[0], *VENV_PEERS, *PEERS[1:]]

__all__ = [
    "PEERS",
    "Backend",
    "BenchResult",
    "Cell",
    "SHAPES",
    "Workload",
    "bench_model",
    "close_backends",
    "default_bench_model",
    "make_workload",
    "prepare_backends",
    "run_bench",
]


def default_bench_model(cache_dir: Path | None = None) -> Path:
    """A random-weight model with the exact shape of ms-marco-MiniLM-L6-v2 (built once).

    Random weights cost the same compute as trained ones, so it measures speed faithfully
    without a download; its scores carry no meaning. Other shapes: :func:`bench_model`.
    """
    return bench_model("minilm-l6", cache_dir)


def prepare_backends(
    model: str | Path,
    *,
    modes: Sequence[str] = ("exact", "fast"),
    peers: Sequence[str] = (),
    threads: int | None = None,
    cache_dir: Path | None = None,
    work_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    device: str = "cpu",
    peer_python: Path | None = None,
    calibration: CalibrationInput | None = None,
) -> list[Backend]:
    """Load the backends to compare: the peers first (the first one is the score reference).

    ``device="cuda"`` runs crossrank and the peers that can use a GPU on it; the CPU-only
    peers are skipped, since a comparison across devices says nothing. The peers in
    :data:`VENV_PEERS` run in the environment of ``peer_python`` (``make peers``), in one
    worker process; without it they are skipped with a message that says how to build it.
    The int8 mode calibrates on ``calibration`` (default: the benchmark's own pairs, never timed).
    """
    unknown = [p for p in peers if p not in PEER_FACTORIES and p not in VENV_PEERS]
    if unknown:
        raise InvalidInput(f"unknown peer(s) {unknown}; choose from {ALL_PEERS}")
    loaded = load_model(model, task="sequence-classification", cache_dir=cache_dir)
    source = ModelSource(loaded.files.directory, loaded.onnx_path)
    work = work_dir or Path(tempfile.mkdtemp(prefix="crossrank-bench-"))
    backends: list[Backend] = []
    in_venv = [p for p in peers if p in VENV_PEERS]
    for peer in peers:
        if loaded.head is not None and loaded.head.kind == "llm-yes-no":
            log.warning("skipping %s: it does not run crossrank's LLM reranker test layouts (its LogitScore needs a "
                        "text-generation Transformer module); crossrank's modes are timed alone", peer)
            continue
        if device != "cpu" and peer not in GPU_PEERS:
            log.warning("skipping %s: it runs on the CPU here (a GPU run compares GPU backends only)", peer)
            continue
        if peer in VENV_PEERS:
            if peer == in_venv[0]:  # all of them at once, in one worker, where the first one stands
                backends.extend(venv_peer_backends(in_venv, source, peer_python, threads, work, progress))
            continue
        if progress:
            progress(f"loading {peer}")
        started = time.perf_counter()
        try:
            backend = PEER_FACTORIES[peer](source, threads, work, device)
        except MissingExtra as exc:
            log.warning("skipping %s: %s", peer, exc)
            continue
        backend.load_seconds = time.perf_counter() - started
        backends.append(backend)
    for mode in modes:
        if progress:
            progress(f"loading crossrank {mode}")
        started = time.perf_counter()
        backend = crossrank_backend(model, mode, threads, cache_dir, device, calibration)
        backend.load_seconds = time.perf_counter() - started
        backends.append(backend)
    return backends



def close_backends(backends: Sequence[Backend]) -> None:
    """End what the backends started (the peer environment's worker process)."""
    for backend in backends:
        if backend.close is not None:
            backend.close()
