"""Cold start and memory of each backend, each measured in a fresh Python process.

* cold start: wall time in a fresh interpreter from its first statement to the first
  score (import + load + first call on one title; the interpreter's own start-up is not
  counted), median of ``--runs`` fresh processes;
* RSS after load: resident memory once the model is loaded (before scoring);
* peak RSS: the high-water mark (VmHWM) after reranking 100 passages once;
* peak RSS, mixed: the high-water mark after ``--mixed`` more requests of 1-100 documents
  of 3-400 words each (deterministic), as a server meets them: every request length and
  batch shape differs, which shows what the process keeps of the memory it freed.

Usage: python benchmarks/memory.py [--model DIR] [--backends crossrank-exact,crossrank-fast,...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = r"""
import json, random, sys, time
start = time.perf_counter()
from pathlib import Path
name, model, threads, work, mixed = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5])

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024  # MiB

from crossrank.bench.inputs import make_workload
if name.startswith("crossrank-"):
    from crossrank import Reranker
    reranker = Reranker(model, mode=name.split("-", 1)[1], threads=threads)
    score = reranker.score
else:
    from crossrank.bench.backends import PEER_FACTORIES, ModelSource
    from crossrank.models.load import load_model
    loaded = load_model(model, task="sequence-classification")
    score = PEER_FACTORIES[name](ModelSource(loaded.files.directory, loaded.onnx_path), threads, work).score
title = make_workload("titles", 1)
score(title.query, title.documents)
cold = time.perf_counter() - start
rss_loaded = status("VmRSS")
passages = make_workload("passages", 100)
score(passages.query, passages.documents)
peak_passages = status("VmHWM")
rng = random.Random(7)
words = " ".join(make_workload("passages", 100, seed=3).documents).split()
for i in range(mixed):
    starts = [(rng.randrange(3, 400), rng.randrange(len(words))) for _ in range(rng.randint(1, 100))]
    score(" ".join(words[i : i + rng.randint(2, 12)]), [" ".join(words[s : s + k]) for k, s in starts])
print(json.dumps({"cold_start_s": cold, "rss_after_load_mib": rss_loaded, "peak_rss_100_passages_mib": peak_passages,
                  "peak_rss_mixed_mib": status("VmHWM")}))
"""


def measure(name: str, model: str, threads: int, work: Path, runs: int, mixed: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", PROBE, name, model, str(threads), str(work), str(mixed)],
            capture_output=True, text=True, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed: {done.stderr[-2000:]}")
        sample = json.loads(done.stdout.strip().splitlines()[-1])
        sample["process_s"] = time.perf_counter() - t0
        samples.append(sample)
    return {
        "cold_start_s": statistics.median(s["cold_start_s"] for s in samples),
        "rss_after_load_mib": statistics.median(s["rss_after_load_mib"] for s in samples),
        "peak_rss_100_passages_mib": statistics.median(s["peak_rss_100_passages_mib"] for s in samples),
        "peak_rss_mixed_mib": statistics.median(s["peak_rss_mixed_mib"] for s in samples),
        "mixed_requests": mixed,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model directory (default: the bench's random ms-marco-MiniLM-L6-v2 shape)")
    parser.add_argument(
        "--backends", default="crossrank-exact,crossrank-fast,sentence-transformers,fastembed,flashrank",
        help="comma-separated backends",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per backend (median)")
    parser.add_argument("--mixed", type=int, default=25, help="mixed-length requests after the 100 passages")
    parser.add_argument("--out", default="benchmarks/results/memory.json")
    args = parser.parse_args(argv)
    from crossrank.bench import default_bench_model

    model = args.model or str(default_bench_model())
    work = Path(tempfile.mkdtemp(prefix="crossrank-memory-"))  # the peers' copies of the model
    results = {}
    for name in args.backends.split(","):
        print(f"memory/cold start: {name} ({args.runs} fresh processes)", file=sys.stderr, flush=True)
        try:
            results[name] = measure(name, model, args.threads, work, args.runs, args.mixed)
        except RuntimeError as exc:
            print(f"  skipped: {exc}", file=sys.stderr)
    print("| backend | cold start (import+load+first score) | RSS after load | peak RSS, 100 passages "
          f"| peak RSS, then {args.mixed} mixed requests |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['cold_start_s']:.2f} s | {r['rss_after_load_mib']:.0f} MiB | "
            f"{r['peak_rss_100_passages_mib']:.0f} MiB | {r['peak_rss_mixed_mib']:.0f} MiB |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"model": model, "threads": args.threads, "results": results}, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
