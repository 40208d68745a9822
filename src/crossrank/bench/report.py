"""Render benchmark results: Markdown tables, JSON and a latency chart."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from crossrank.bench.runner import BenchResult
from crossrank.extras import require
from crossrank.runtime.select import cpu_flags

_SINGULAR = {"titles": "title", "passages": "passage"}
_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def machine() -> dict[str, Any]:
    """CPU model, cores, bf16/int8 instruction sets, library versions."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("onnxruntime", "openvino", "torch", "sentence_transformers", "fastembed", "flashrank"):
        try:
            from importlib.metadata import version

            versions[package] = version(package.replace("_", "-"))
        except Exception:
            continue
    gpu = None
    torch = sys.modules.get("torch")  # only when a backend already imported it
    if torch is not None and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    return {
        "cpu": model,
        "gpu": gpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "isa": [flag for flag in _FLAGS if flag in cpu_flags()],
        "python": platform.python_version(),
        "versions": versions,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _columns(result: BenchResult) -> list[tuple[str, int]]:
    seen: list[tuple[str, int]] = []
    for c in result.cells:
        if (c.kind, c.n) not in seen:
            seen.append((c.kind, c.n))
    return seen


def _header(kind: str, n: int) -> str:
    return f"{n} {_SINGULAR.get(kind, kind) if n == 1 else kind}"


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def latency_table(result: BenchResult) -> str:
    """The Metarank-style table: median latency per backend and workload."""
    cols = _columns(result)
    lines = ["| backend | " + " | ".join(_header(k, n) for k, n in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for b in result.backends:
        cells = [result.cell(b.name, k, n) for k, n in cols]
        lines.append(f"| {b.label} | " + " | ".join(_ms(c.median_ms) if c else "—" for c in cells) + " |")
    return "\n".join(lines)


def ratio_table(result: BenchResult, baseline: str) -> str:
    """Speed-up of every backend over ``baseline`` (median over median), per workload."""
    cols = _columns(result)
    lines = [
        f"| speed-up vs {baseline} | " + " | ".join(_header(k, n) for k, n in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for b in result.backends:
        values = []
        for k, n in cols:
            base, cell = result.cell(baseline, k, n), result.cell(b.name, k, n)
            values.append(f"{base.median_ms / cell.median_ms:.2f}×" if base and cell else "—")
        lines.append(f"| {b.label} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def detail_table(result: BenchResult) -> str:
    """Every cell: median, p10, p90, pairs/s, rounds, agreement with the reference backend."""
    lines = [
        "| backend | workload | median | p10 | p90 | pairs/s | rounds | max abs diff | top-10 overlap | Spearman |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b in result.backends:
        for k, n in _columns(result):
            c = result.cell(b.name, k, n)
            if c is None:
                continue
            overlap = "—" if c.top10_overlap is None else f"{c.top10_overlap}/10"
            diff = "—" if c.max_abs_diff is None else f"{c.max_abs_diff:.1e}"
            rho = "—" if c.spearman is None else f"{c.spearman:.4f}"
            lines.append(
                f"| {b.name} | {_header(k, n)} | {_ms(c.median_ms)} | {_ms(c.p10_ms)} | {_ms(c.p90_ms)} "
                f"| {c.pairs_per_s:,.0f} | {len(c.seconds)} | {diff} | {overlap} | {rho} |"
            )
    return "\n".join(lines)


def to_json(result: BenchResult, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine": machine(),
        "settings": settings,
        "backends": [
            {"name": b.name, "label": b.label, "load_seconds": b.load_seconds, **b.info} for b in result.backends
        ],
        "cells": [c.to_json() for c in result.cells],
    }


def caveats(load_average: float, cores: int, random_weights: bool, busy: float = 0.5) -> list[str]:
    """What makes this run's figures less than they look: a busy machine, a random-weight model."""
    notes = []
    if load_average > busy * cores:
        notes.append(
            f"the machine was busy when the run started (load average {load_average:.1f} on {cores} cores): other "
            "work competes for the CPU, so the timings are noisy and the ratios uncertain; rerun on a quiet machine"
        )
    if random_weights:
        notes.append(
            "the model has random weights: the speed is the trained model's, but its scores are near-ties, so the "
            "fidelity columns (max abs diff, top-10 overlap) say little about a trained model's ranking; measure "
            "fidelity with --model set to the trained model"
        )
    return notes


def write_json(result: BenchResult, settings: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(result, settings), indent=2) + "\n")


def write_chart(result: BenchResult, path: Path, title: str) -> None:
    """Median latency (p10-p90 bars) against N, one line per backend, log-log, per kind."""
    matplotlib = require("matplotlib", "bench", "Drawing the benchmark chart")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(dict.fromkeys(c.kind for c in result.cells))
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4.5), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for b in result.backends:
            cells = sorted((c for c in result.cells if c.kind == kind and c.backend == b.name), key=lambda c: c.n)
            if not cells:
                continue
            xs = [c.n for c in cells]
            ys = [c.median_ms for c in cells]
            err = [[c.median_ms - c.p10_ms for c in cells], [c.p90_ms - c.median_ms for c in cells]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=b.label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("documents per query (N)")
        ax.set_ylabel("latency, ms (median, p10-p90)")
        ax.set_title(kind)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
