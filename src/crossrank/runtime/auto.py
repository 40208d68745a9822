"""``mode="auto"`` on the CPU: time fast and exact on this machine once, keep the faster.

CPU flags say bf16 is native, not that it is faster for this model on this machine (a small
model on few cores can be bound by memory or overheads where bf16 buys nothing). So where fast
is available, the first load of a model times both runtimes on the same probe batch (a few
rounds after a warm-up, median) and keeps the faster; the verdict is cached per model graph,
CPU, thread count and runtime versions in ``<cache>/auto-choice.json``, so later loads do not
measure again. Both modes rank alike (fast keeps the ranking; see the modes table).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: the probe: rows of this many tokens, timed this many rounds after one warm-up
PROBE_ROWS, PROBE_TOKENS, ROUNDS = 16, 128, 3


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("onnxruntime", "openvino"):
        try:
            found.append(f"{package}={version(package)}")
        except PackageNotFoundError:
            found.append(f"{package}=none")
    return ",".join(found)


def choice_key(graph: Path, threads: int | None) -> str:
    """What the verdict depends on: the graph (its path and size), CPU, threads, versions."""
    stat = graph.stat()
    cores = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    text = f"{graph.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{_cpu_name()}|{cores}|{_versions()}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def probe_feed(vocab_size: int, pad_id: int, rows: int = PROBE_ROWS, tokens: int = PROBE_TOKENS) -> dict[str, np.ndarray]:
    """A fixed batch of ``rows`` × ``tokens`` ids from the vocabulary (no padding): the same work
    for both runtimes."""
    ids = np.arange(rows * tokens, dtype=np.int64).reshape(rows, tokens) * 7919 % max(vocab_size, 2)
    ids[ids == pad_id] = (pad_id + 1) % max(vocab_size, 2)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def median_seconds(run: Callable[[dict[str, np.ndarray]], Any], feed: dict[str, np.ndarray],
                   rounds: int = ROUNDS) -> float:
    run(feed)  # warm-up: compilation, first allocations
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run(feed)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class ChoiceCache:
    """Verdicts by key in one small JSON file (rewritten atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._read().get(key)
        return entry if isinstance(entry, dict) and entry.get("mode") in ("exact", "fast") else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        data = self._read()
        data[key] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        partial.write_text(json.dumps(data, indent=2) + "\n")
        partial.replace(self.path)


def measured_mode(
    key: str, cache: ChoiceCache, fast: Callable[[dict[str, np.ndarray]], Any],
    exact: Callable[[], Callable[[dict[str, np.ndarray]], Any]], vocab_size: int, pad_id: int,
) -> dict[str, Any]:
    """The cached verdict for ``key``, or a new one: both runtimes timed on the probe.

    ``exact`` builds the exact runtime's run function only when a measurement is needed.
    """
    cached = cache.get(key)
    if cached is not None:
        return cached
    feed = probe_feed(vocab_size, pad_id)
    fast_s = median_seconds(fast, feed)
    exact_s = median_seconds(exact(), feed)
    entry = {"mode": "fast" if fast_s <= exact_s else "exact", "fast_ms": round(fast_s * 1000, 2),
             "exact_ms": round(exact_s * 1000, 2), "probe": f"{PROBE_ROWS}x{PROBE_TOKENS} tokens",
             "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    log.info("mode='auto': fast %.1f ms, exact %.1f ms on the probe; using %s", entry["fast_ms"], entry["exact_ms"],
             entry["mode"])
    cache.put(key, entry)
    return entry
