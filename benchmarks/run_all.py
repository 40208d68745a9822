"""Reproduce every performance figure of the README and docs/PERFORMANCE.md with one command.

    python benchmarks/run_all.py            # about 30-40 minutes on 2 cores
    python benchmarks/run_all.py --quick    # a smoke run: fewer rounds, same tables

Runs, in order, each in a fresh process:
1. ``crossrank bench --compare`` - the latency table (1/10/100 titles and passages) of
   sentence-transformers, FastEmbed, FlashRank and crossrank exact/fast/int8 (int8 calibrated on the
   benchmark's own untimed pairs), with ratios;
2. ``benchmarks/memory.py`` - cold start (import + load + first score), RSS after load,
   peak RSS while reranking 100 passages and then after 25 mixed-length requests, per backend;
3. ``benchmarks/fidelity.py`` - exact-mode parity with transformers, fast-mode (and int8)
   ranking agreement on a trained-body cross-encoder;
4. ``benchmarks/levers.py`` - what each speed lever is worth;
5. ``benchmarks/roofline.py`` - the machine's matrix-multiply rates, how close each backend
   runs to them, and the fastest each speed goal could be at those rates;
6. with ``--gpu``: the latency table on the GPU (``--device cuda``) and the fp16 fidelity check.

Everything lands in ``benchmarks/results/`` (JSON, PNG) and ``benchmarks/results/SUMMARY.md``.
Other processes on the machine skew the timings: the load average is recorded with each step.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def step(title: str, command: list[str], summary: list[str]) -> None:
    print(f"\n=== {title}\n$ {' '.join(command)}", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - started
    print(done.stdout)
    summary += [
        f"## {title}",
        "",
        f"`{' '.join(command)}` ({elapsed:.0f} s; load average at start {load:.2f}, at end {os.getloadavg()[0]:.2f};"
        f" exit {done.returncode})",
        "",
        done.stdout.strip(),
        "",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run; noisier figures)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every backend (default: 2)")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument(
        "--gpu", action="store_true",
        help="on a machine with an NVIDIA GPU: also time crossrank and sentence-transformers on it "
        "(results in OUT/gpu) and check the fp16 fast mode's ranking there",
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    script = Path(py).parent / "crossrank"
    crossrank = [str(script)] if script.exists() else [py, "-m", "crossrank.cli"]
    repeats = ["--repeats", "5", "--cell-budget", "20"] if args.quick else ["--repeats", "20", "--cell-budget", "90"]
    summary = ["# crossrank performance figures", ""]
    step(
        "Latency: crossrank bench --compare",
        [*crossrank, "bench", "--compare", "--modes", "exact,fast,int8", "--threads", str(args.threads), "--out",
         str(out), *repeats],
        summary,
    )
    step(
        "Cold start and memory",
        [py, str(HERE / "memory.py"), "--threads", str(args.threads), "--runs", "1" if args.quick else "3",
         "--out", str(out / "memory.json")],
        summary,
    )
    step("Fidelity", [py, str(HERE / "fidelity.py"), "--seeds", "1" if args.quick else "3",
                      "--out", str(out / "fidelity.json")], summary)
    step("Levers", [py, str(HERE / "levers.py"), "--threads", str(args.threads), "--rounds", "3" if args.quick else "8",
                    "--out", str(out / "levers.json")], summary)
    step("Roofline", [py, str(HERE / "roofline.py"), "--threads", str(args.threads), "--rounds", "3" if args.quick else "8",
                      "--json", str(out / "roofline.json")], summary)
    if args.gpu:
        step(
            "Latency on the GPU: crossrank bench --compare --device cuda",
            [*crossrank, "bench", "--compare", "--device", "cuda", "--out", str(out / "gpu"), *repeats],
            summary,
        )
        fidelity = [py, str(HERE / "fidelity.py"), "--device", "cuda", "--seeds", "1" if args.quick else "3",
                    "--out", str(out / "gpu" / "fidelity.json")]
        step("Fidelity on the GPU (fp16)", fidelity, summary)
    (out / "SUMMARY.md").write_text("\n".join(summary) + "\n")
    print(f"wrote {out / 'SUMMARY.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
