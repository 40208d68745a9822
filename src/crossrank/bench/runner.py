"""Time backends on identical workloads, interleaved so that machine noise hits all alike.

For every (kind, N) cell each backend is called once per round, in turn, for ``repeats``
rounds (after one untimed warm-up call each). A busy machine then slows every backend in
the same rounds, and the ratios between them stay meaningful even when absolute times
drift. A cell stops early, after at least ``min_repeats`` rounds, once it has used
``cell_budget_s`` seconds.

Runtimes leave their worker threads spinning for a moment after a call (ONNX Runtime,
OpenMP in torch, TBB in OpenVINO); the next backend would then compete with them for the
cores. A short ``pause_s`` before each timed call lets those threads go to sleep, so no
backend pays for its predecessor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from crossrank.bench.backends import Backend
from crossrank.bench.inputs import make_workload

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass
class Cell:
    """Timings of one backend on one workload, plus agreement with the reference backend."""

    backend: str
    kind: str
    n: int
    seconds: list[float]
    max_abs_diff: float | None = None  # vs the reference backend's scores
    top10_overlap: int | None = None  # |top-10 ∩ reference top-10| (N >= 10)
    spearman: float | None = None  # rank correlation with the reference's scores (N >= 10)

    @property
    def median_ms(self) -> float:
        return float(np.median(self.seconds) * 1000)

    @property
    def p10_ms(self) -> float:
        return float(np.percentile(self.seconds, 10) * 1000)

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.seconds, 90) * 1000)

    @property
    def pairs_per_s(self) -> float:
        return self.n / float(np.median(self.seconds))

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data.update(
            median_ms=self.median_ms, p10_ms=self.p10_ms, p90_ms=self.p90_ms, pairs_per_s=self.pairs_per_s
        )
        return data


@dataclass
class BenchResult:
    backends: list[Backend]
    cells: list[Cell] = field(default_factory=list)

    def cell(self, backend: str, kind: str, n: int) -> Cell | None:
        for c in self.cells:
            if (c.backend, c.kind, c.n) == (backend, kind, n):
                return c
        return None


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ranks by stable sort; exact ties are rare in real scores)."""
    ranks_a = np.argsort(np.argsort(a, kind="stable"), kind="stable")
    ranks_b = np.argsort(np.argsort(b, kind="stable"), kind="stable")
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def _agreement(scores: np.ndarray, reference: np.ndarray) -> tuple[float, int | None, float | None]:
    """Max abs difference; top-10 overlap and Spearman against the reference (N >= 10)."""
    diff = float(np.max(np.abs(scores - reference))) if len(scores) else 0.0
    if len(scores) < 10:
        return diff, None, None
    top = set(np.argsort(-scores, kind="stable")[:10].tolist())
    ref = set(np.argsort(-reference, kind="stable")[:10].tolist())
    return diff, len(top & ref), spearman(scores, reference)


def run_bench(
    backends: Sequence[Backend],
    *,
    sizes: Sequence[int] = (1, 10, 100),
    kinds: Sequence[str] = ("titles", "passages"),
    repeats: int = 20,
    min_repeats: int = 5,
    cell_budget_s: float = 60.0,
    seed: int = 0,
    pause_s: float = 0.05,
    progress: Progress | None = None,
) -> BenchResult:
    """Measure every backend on every (kind, N); the first backend is the score reference."""
    result = BenchResult(list(backends))
    cells_total = len(sizes) * len(kinds)
    done = 0
    for kind in kinds:
        for n in sizes:
            done += 1
            work = make_workload(kind, n, seed=seed)  # type: ignore[arg-type]
            timings: dict[str, list[float]] = {b.name: [] for b in backends}
            reference: np.ndarray | None = None
            agreement: dict[str, tuple[float, int | None, float | None]] = {}
            for b in backends:  # warm-up call, also the scores compared with the reference
                scores = np.asarray(b.score(work.query, work.documents), dtype=np.float64)
                if reference is None:
                    reference = scores
                agreement[b.name] = _agreement(scores, reference)
            started = time.perf_counter()
            for r in range(repeats):
                for b in backends:
                    if pause_s > 0:
                        time.sleep(pause_s)
                    t0 = time.perf_counter()
                    b.score(work.query, work.documents)
                    elapsed_call = time.perf_counter() - t0
                    timings[b.name].append(b.timer() if b.timer is not None else elapsed_call)
                elapsed = time.perf_counter() - started
                if progress:
                    progress(f"[{done}/{cells_total}] {n} {kind}: round {r + 1}/{repeats} ({elapsed:.0f} s)")
                if r + 1 >= min_repeats and elapsed > cell_budget_s:
                    log.info("%d %s: stopping after %d rounds (cell budget %.0f s)", n, kind, r + 1, cell_budget_s)
                    break
            for b in backends:
                diff, overlap, rho = agreement[b.name]
                result.cells.append(Cell(b.name, kind, n, timings[b.name], diff, overlap, rho))
    return result
