"""Peers that run in a separate Python environment: sentence-transformers' ONNX and OpenVINO backends.

Their packages (``optimum-onnx``, ``optimum-intel``) pin an older ``transformers`` than
crossrank's, so they cannot share crossrank's environment. ``make peers`` builds
``.venv-peers`` with them; the benchmark starts :mod:`crossrank.bench.peer_worker` with that
environment's Python and drives it one JSON line at a time (see that module for the
protocol). Each call is timed inside the worker, so the figures leave out the transfer, and
the runner interleaves the calls with crossrank's as it does for the in-process peers.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from crossrank.bench.backends import Backend, ModelSource
from crossrank.bench.inputs import make_workload
from crossrank.errors import InvalidInput, ModelError

log = logging.getLogger(__name__)

#: the peers served by the worker in the peer environment, with what each one runs
VENV_PEERS: dict[str, str] = {
    "st-onnx": "sentence-transformers CrossEncoder backend=onnx",
    "st-onnx-o3": "sentence-transformers CrossEncoder backend=onnx",
    "st-openvino": "sentence-transformers CrossEncoder backend=openvino",
    "st-openvino-int8": "sentence-transformers CrossEncoder backend=openvino",
}
WORKER = Path(__file__).with_name("peer_worker.py")
HOW_TO = (
    "run `make peers` in a crossrank checkout (it builds .venv-peers with sentence-transformers, optimum-onnx and "
    "optimum-intel, which need an older transformers than crossrank's) and pass --peer-python .venv-peers/bin/python"
)
#: texts the int8 peer calibrates on: as many as the issue's measurement used, none of them timed
CALIBRATION_TEXTS = 300


def default_peer_python() -> Path | None:
    """``.venv-peers/bin/python`` in the current directory or in the checkout crossrank runs from."""
    checkout = Path(__file__).resolve().parents[3]
    for root in (Path.cwd(), checkout):
        candidate = root / ".venv-peers" / "bin" / "python"
        if candidate.is_file():
            return candidate
    return None


def calibration_texts(count: int = CALIBRATION_TEXTS) -> list[str]:
    """Query-and-document texts from the benchmark's generator, with seeds the timed runs never use."""
    texts: list[str] = []
    seed = 1000
    while len(texts) < count:
        for kind in ("titles", "passages"):
            work = make_workload(kind, 10, seed=seed)
            texts.extend(f"{work.query} {doc}" for doc in work.documents)
        seed += 1
    return texts[:count]


class PeerWorker:
    """One worker process in the peer environment, serving every peer it loads."""

    def __init__(self, python: Path, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.log_path = work / "peer-worker.log"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the peer environment's packages only
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(work / "hf-home"),
                   TOKENIZERS_PARALLELISM="false")
        self._log = open(self.log_path, "w", encoding="utf-8")
        try:
            self._process = subprocess.Popen(
                [str(python), "-u", str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                text=True, encoding="utf-8", env=env,
            )
        except OSError as exc:
            self._log.close()
            raise ModelError(f"cannot start the peer environment's Python {python}: {exc}") from exc
        hello = self._read()
        self.versions: dict[str, str] = dict(hello.get("versions", {}))

    def _stdin(self) -> IO[str]:
        assert self._process.stdin is not None
        return self._process.stdin

    def _read(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.wait(timeout=30)
            self._log.flush()
            tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise ModelError(f"the peer worker exited (code {self._process.returncode}); its last words:\n{tail}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request; the answer, or :class:`ModelError` with the worker's message."""
        try:
            self._stdin().write(json.dumps(message) + "\n")
            self._stdin().flush()
        except (BrokenPipeError, ValueError) as exc:
            raise ModelError(f"the peer worker is gone ({exc}); see {self.log_path}") from exc
        answer = self._read()
        if "error" in answer:
            raise ModelError(str(answer["error"]))
        return answer

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self._stdin().write(json.dumps({"op": "quit"}) + "\n")
                self._stdin().close()
                self._process.wait(timeout=30)
            except (BrokenPipeError, ValueError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        self._log.close()


def _backend(worker: PeerWorker, peer: str, label: str, load_seconds: float, python: Path) -> Backend:
    last: list[float] = [0.0]

    def score(query: str, docs: list[str]) -> np.ndarray:
        answer = worker.request({"op": "score", "peer": peer, "query": query, "documents": docs})
        last[0] = float(answer["seconds"])
        return np.asarray(answer["scores"], dtype=np.float64)

    info = {"python": str(python), "versions": worker.versions}
    what = VENV_PEERS.get(peer, "sentence-transformers CrossEncoder")
    return Backend(peer, f"{what} ({label})", score, load_seconds, timer=lambda: last[0],
                   close=worker.close, info=info)


def venv_peer_backends(
    peers: list[str],
    source: ModelSource,
    python: Path | None,
    threads: int | None,
    work: Path,
    progress: Callable[[str], None] | None = None,
) -> list[Backend]:
    """Load ``peers`` in the worker; each one that fails is skipped with the worker's reason."""
    if not peers:
        return []
    if python is None:
        log.warning("skipping %s: no peer environment found; %s", ", ".join(peers), HOW_TO)
        return []
    if not python.is_file():
        raise InvalidInput(f"--peer-python {python} does not exist; {HOW_TO}")
    worker = PeerWorker(python, work / "peer-worker")
    backends: list[Backend] = []
    for peer in peers:
        if progress:
            progress(f"loading {peer} in {python}")
        message: dict[str, Any] = {
            "op": "load", "peer": peer, "model": str(source.directory), "work": str(work / "peer-models"),
            "threads": threads or len(os.sched_getaffinity(0)),
        }
        if peer == "st-openvino-int8":
            message["calibration"] = calibration_texts()
        try:
            answer = worker.request(message)
        except ModelError as exc:
            log.warning("skipping %s: the peer environment could not load it (%s); %s", peer, exc, HOW_TO)
            continue
        backends.append(_backend(worker, peer, str(answer["label"]), float(answer["seconds"]), python))
    if not backends:
        worker.close()
    return backends
