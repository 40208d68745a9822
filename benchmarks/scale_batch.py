"""``rerank-run`` on each engine: single process, Ray Data with 1 and 2 workers, Spark ``local[2]``.

Generates a run of Q queries x C candidates over a synthetic corpus, reranks it on every engine,
checks each output equals the single-process file (same order, scores within 1e-6; byte-equal
reported too) and reports pairs/s (wall time of the whole job, start-up included) and the peak
RSS of each worker process (VmHWM, read from /proc by the workers themselves).

    python benchmarks/scale_batch.py                        # 2,000 x 100, random-weight MiniLM-L6 shape
    python benchmarks/scale_batch.py --queries 200 --candidates 50 --layers 2 --json out.json

Without ``--model`` it builds ms-marco-MiniLM-L6-v2's architecture (``--layers``, hidden 384) with
random weights: the speed is the real model's, the scores are meaningless. Each worker runs one
ONNX Runtime thread, so with 2 cores 2 workers is the most that helps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from crossrank.batch.run import Job  # noqa: E402
from crossrank.batch.scorer import PairScorer, RerankerSpec  # noqa: E402
from crossrank.evaluate.rerank_run import rerank_run  # noqa: E402
from crossrank.evaluate.synthetic import write_synthetic_beir  # noqa: E402
from crossrank.evaluate.trec import iter_run  # noqa: E402
from crossrank.retrieval.records import read_records  # noqa: E402


def peaks_dir() -> Path:
    return Path(os.environ.get("CROSSRANK_BENCH_PEAKS", tempfile.gettempdir())) / "crossrank-bench-peaks"


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class MeasuredScorer(PairScorer):
    """Writes its process's peak RSS to peaks_dir()/<engine>-<pid> after each batch."""

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        answer = super().__call__(batch)
        directory = peaks_dir()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{os.environ.get('CROSSRANK_BENCH_ENGINE', 'x')}-{os.getpid()}").write_text(f"{peak_rss_mb():.1f}")
        return answer


def make_inputs(directory: Path, queries: int, candidates: int) -> tuple[Path, Path, Path]:
    info = write_synthetic_beir(directory / "syn", queries=queries, documents=max(20 * candidates, 6 * queries + 1))
    ids = sorted(r.id for r in read_records(info.path / "corpus.jsonl"))
    run = directory / "first.trec"
    with open(run, "w") as handle:
        for q in range(queries):
            picked = [ids[(q * 37 + k * 11) % len(ids)] for k in range(candidates)]
            handle.writelines(f"q{q} Q0 {d} {r} {1000 - r} bm25\n" for r, d in enumerate(picked, 1))
    return run, info.path / "corpus.jsonl", info.path / "queries.jsonl"


def compare(actual: Path, expected: Path) -> tuple[bool, float, bool]:
    got, want = dict(iter_run(actual)), dict(iter_run(expected))
    same_order = list(got) == list(want) and all(
        [r.docid for r in got[q]] == [r.docid for r in want[q]] for q in want)
    worst = max((abs(a.score - b.score) for q in want for a, b in zip(got.get(q, []), want[q])), default=0.0)
    return same_order and worst <= 1e-6, worst, actual.read_bytes() == expected.read_bytes()


def peaks(engine: str) -> list[float]:
    return sorted(float(p.read_text()) for p in peaks_dir().glob(f"{engine}-*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="cross-encoder directory (default: random MiniLM-L6 shape)")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=384, help="hidden size of the random model (MiniLM: 384); "
                        "a small one (e.g. 64 with --layers 1) measures what the engines themselves cost")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--engines", nargs="+", default=["local", "ray1", "ray2", "spark2"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]

    work = Path(tempfile.mkdtemp(prefix="crossrank-scale-"))
    os.environ["CROSSRANK_BENCH_PEAKS"] = str(work)  # the workers read it at import: this run's files only
    os.environ["HF_HOME"] = str(work / "hf")  # the workers start after this: one shared export cache
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), *sys.path])
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if args.model:
        model = args.model
    else:
        from crossrank.models.synthetic import build_random_model

        shape = {} if args.hidden == 384 else {"hidden_size": args.hidden, "num_attention_heads": max(1, args.hidden // 32),
                                               "intermediate_size": 4 * args.hidden}
        model = str(build_random_model(work / "model", layers=args.layers, **shape))
    spec = RerankerSpec(model, {"cache_dir": str(work / "cache"), "batch_size": 32})
    run, corpus, queries = make_inputs(work, args.queries, args.candidates)
    pairs = args.queries * args.candidates
    spec.prepare()  # the ONNX export, once, outside every timing
    results: list[dict[str, Any]] = []
    reference = work / "local.trec"
    for engine in args.engines:
        out = work / f"{engine}.trec"
        os.environ["CROSSRANK_BENCH_ENGINE"] = engine
        job = Job(run, corpus, queries, out, top_n=args.candidates, tag="ce")
        started = time.perf_counter()
        if engine == "local":
            from crossrank import Reranker

            reranker = Reranker(model, cache_dir=spec.options["cache_dir"], batch_size=32, threads=1)
            rerank_run(run, corpus, queries, out, reranker, top_n=args.candidates, tag="ce", progress=False)
            worker_peaks = [peak_rss_mb()]
        elif engine.startswith("ray"):
            from crossrank.batch.ray_data import rerank_run_ray

            rerank_run_ray(job, spec, workers=int(engine[3:]), scorer=MeasuredScorer)
            worker_peaks = peaks(engine)
        else:
            from crossrank.batch.spark import rerank_run_spark

            rerank_run_spark(job, spec, workers=int(engine[5:]), scorer=MeasuredScorer)
            worker_peaks = peaks(engine)
        seconds = time.perf_counter() - started
        equal, worst, byte_equal = compare(out, reference) if engine != "local" else (True, 0.0, True)
        row = {"engine": engine, "pairs": pairs, "seconds": round(seconds, 1), "pairs_per_s": round(pairs / seconds),
               "equal": equal, "max_abs_diff": worst, "byte_equal": byte_equal,
               "worker_peak_rss_mb": [round(p) for p in worker_peaks]}
        results.append(row)
        print(json.dumps(row), flush=True)
    shape = args.model or f"random BERT, {args.layers} layers, hidden {args.hidden}"
    print(f"\n{args.queries} queries x {args.candidates} candidates = {pairs} pairs; {shape}; {os.cpu_count()} cores; "
          f"load average {load_at_start:.1f} at start, {os.getloadavg()[0]:.1f} at end\n")
    print("| engine | seconds | pairs/s | equal to single process (1e-6) | byte-equal | peak RSS per worker (MB) |")
    print("|---|---:|---:|---|---|---|")
    for r in results:
        print(f"| {r['engine']} | {r['seconds']} | {r['pairs_per_s']} | {r['equal']} (max diff {r['max_abs_diff']:.1e}) "
              f"| {r['byte_equal']} | {', '.join(map(str, r['worker_peak_rss_mb']))} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
