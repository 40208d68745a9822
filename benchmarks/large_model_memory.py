"""Peak memory of exporting and loading a model over 2 GiB (bge-reranker-v2-m3's shape).

Builds a random-weight XLMRobertaForSequenceClassification with bge-reranker-v2-m3's
configuration (hidden 1024, 24 layers, 16 heads, intermediate 4096, vocabulary 250002, 8194
positions: 568M parameters, 2.27 GB in fp32) in a temporary directory, then, each step in a
fresh process:

1. build: writes the random weights (for reference; not crossrank's work);
2. export: ``cached_export`` (the exporter runs in its own child process, as always);
3. first load: ``Reranker(dir)`` and one score (includes the first-token cut, made once in a
   child process);
4. second load: the same with everything cached (what a restart costs).

For each step it reports the peak RSS of the step's process (VmHWM) and of the largest child
process it waited for (``getrusage(RUSAGE_CHILDREN)``), and the file sizes written. Needs about
6 GB of free memory and 5 GB of disk; run it alone.

On a 2-core EPYC (24 GiB), torch 2.13, onnxruntime 1.32: the exporter child peaked at 5.1 GB
(torch's exporter holds the weights and their serialized copy), the loading process at 1.24 GB
(1.23 GB resident once loaded: ONNX Runtime maps the page-aligned external data, and only the
embedding rows in use become resident), the first-token cut's child at 1.27 GB.

Usage: python benchmarks/large_model_memory.py [--keep DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BGE_M3 = {
    "layers": 24, "hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 4096,
    "vocab_size": 250002, "max_position_embeddings": 8194,
}

PROBE = r"""
import json, resource, sys, time
from pathlib import Path
step, model, cache, threads = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
started = time.perf_counter()

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024  # MiB

if step == "build":
    from crossrank.models.synthetic import build_random_model
    settings = json.loads(sys.argv[5])
    build_random_model(model, architecture="xlm-roberta", layers=settings.pop("layers"), **settings)
elif step == "export":
    from crossrank.models.export import cached_export
    from crossrank.models.resolve import resolve_model
    print(cached_export(resolve_model(model), task="sequence-classification", cache_dir=cache), file=sys.stderr)
else:
    from crossrank import Reranker
    reranker = Reranker(model, cache_dir=cache, threads=threads)
    loaded = status("VmRSS")
    reranker.score("a query", ["a short document", "another document that is a little longer than the first"])
    print(reranker.runtime.path, file=sys.stderr)
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"step": step, "seconds": round(time.perf_counter() - started, 1), "peak_mib": status("VmHWM"),
                  "children_peak_mib": children, "rss_after_load_mib": locals().get("loaded")}))
"""


def _run(step: str, model: Path, cache: Path, threads: int, *extra: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, step, str(model), str(cache), str(threads), *extra],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{step} failed:\n{out.stderr[-3000:]}")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _sizes(root: Path) -> dict[str, float]:
    """Sizes in GB; a name ending in ``(linked)`` shares its data with another file (a hard link)."""
    return {
        str(p.relative_to(root)) + (" (linked)" if p.stat().st_nlink > 1 else ""): round(p.stat().st_size / 1e9, 3)
        for p in sorted(root.rglob("*")) if p.is_file() and p.stat().st_size > 1 << 20
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="a 2-layer small shape, to check the script runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crossrank-large-") as tmp:
        root = args.keep or Path(tmp)
        model, cache = root / "bge-m3-shape", root / "cache"
        shape = {**BGE_M3, "layers": 2, "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128} if args.smoke \
            else BGE_M3
        rows = [_run("build", model, cache, args.threads, json.dumps(shape))]
        for step in ("export", "first-load", "second-load"):
            rows.append(_run(step, model, cache, args.threads))
            time.sleep(1)
        print(f"{'step':<12} {'seconds':>8} {'peak RSS MiB':>13} {'child peak MiB':>15} {'RSS loaded MiB':>15}")
        for row in rows:
            loaded = row["rss_after_load_mib"]
            print(f"{row['step']:<12} {row['seconds']:>8} {row['peak_mib']:>13.0f} {row['children_peak_mib']:>15.0f} "
                  f"{'-' if loaded is None else format(loaded, '.0f'):>15}")
        print("\nfiles over 1 MiB (GB):")
        for name, size in _sizes(root).items():
            print(f"  {name}: {size}")
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
