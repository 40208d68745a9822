"""Load-test ``crossrank serve``: throughput and latency by concurrency, batching on vs off.

Starts a real server process on 127.0.0.1 for each batching mode, then for each client count
runs N concurrent clients for a fixed time, each reranking the same number of short titles
per request (TEI ``/rerank``). Reports pairs/s, requests/s, p50/p99 latency and the server's
peak RSS (``VmHWM``).

    python benchmarks/server_load.py                      # random-weight MiniLM-L6 shape
    python benchmarks/server_load.py --model DIR --clients 1 8 64 --duration 20 --json out.json
    python benchmarks/server_load.py --model DIR --infinity-python VENV/bin/python   # adds Infinity's rows

``--infinity-python`` names the Python of an environment with ``infinity-emb[server,torch]``
(install torch 2.13.0 first there); its server (``infinity_emb v2 --engine torch --device cpu``)
serves the same model directory on 127.0.0.1, gets the same requests in its own wire format
(``{"query", "documents"}`` to ``/rerank``) and its rows come after crossrank's.

Without ``--model`` it builds ms-marco-MiniLM-L6-v2's architecture (6 layers, hidden 384)
with random weights: the speed is the real model's, the scores are meaningless.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from crossrank.server.launch import ServerProcess

WORDS = ("crocs clog sandal boot leather kids classic lined comfort work shoe charm pack white black slide "
         "waterproof hiking trail running lightweight summer winter foam strap buckle men women size wide "
         "navy red green blue jibbitz alien vent specialist baya platform").split()


def titles(count: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) for _ in range(count)]


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a process (Linux ``VmHWM``), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def run_clients(url: str, clients: int, seconds: float, docs: int, words: int,
                      texts_key: str = "texts") -> dict[str, Any]:
    """``clients`` concurrent loops posting to ``/rerank`` for ``seconds`` (documents under ``texts_key``:
    "texts" for TEI's format, "documents" for Infinity's)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    bodies = [{"query": f"crocs {WORDS[i % len(WORDS)]}", texts_key: titles(docs, words, seed=i)} for i in range(16)]

    async def client_loop(seed: int, client: httpx.AsyncClient, stop: float) -> None:
        k = seed
        while time.monotonic() < stop:
            body = bodies[k % len(bodies)]
            k += 1
            started = time.perf_counter()
            response = await client.post("/rerank", json=body)
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await client.post("/rerank", json=bodies[0])  # warm the connection and the model
        started = time.monotonic()
        stop = started + seconds
        await asyncio.gather(*(client_loop(i, client, stop) for i in range(clients)))
        elapsed = time.monotonic() - started
    ok = statuses.get(200, 0)
    return {
        "clients": clients,
        "requests": len(latencies),
        "statuses": statuses,
        "seconds": elapsed,
        "requests_per_s": ok / elapsed,
        "pairs_per_s": ok * docs / elapsed,
        "p50_ms": float(np.percentile(latencies, 50) * 1000) if latencies else float("nan"),
        "p99_ms": float(np.percentile(latencies, 99) * 1000) if latencies else float("nan"),
    }


def batch_counters(url: str) -> tuple[float, float]:
    """(rows, model calls) so far, from the server's Prometheus metrics."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    values = {}
    for name in ("crossrank_batch_rows_sum", "crossrank_batch_rows_count"):
        match = re.search(rf'^{name}{{model="bench"}} (\S+)$', text, re.MULTILINE)
        values[name] = float(match.group(1)) if match else 0.0
    return values["crossrank_batch_rows_sum"], values["crossrank_batch_rows_count"]


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| batching | clients | pairs/s | requests/s | p50 ms | p99 ms | requests | non-200 | rows/call | "
             "peak RSS MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        bad = sum(v for k, v in r["statuses"].items() if k != 200)
        lines.append(f"| {r['batching']} | {r['clients']} | {r['pairs_per_s']:.0f} | {r['requests_per_s']:.1f} | "
                     f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['requests']} | {bad} | {r['rows_per_call']:.1f} | "
                     f"{r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def infinity_rows(args: argparse.Namespace, model: str, tmp: Path) -> list[dict[str, Any]]:
    """The same clients against Infinity serving ``model`` on the CPU with torch (its dynamic batching on)."""
    import subprocess

    from crossrank.server.launch import free_port, wait_until_answers

    port = free_port()
    command = [args.infinity_python, "-m", "infinity_emb.cli", "v2", "--model-id", model, "--host", "127.0.0.1",
               "--port", str(port), "--engine", "torch", "--device", "cpu", "--no-model-warmup"]
    env = {**os.environ, "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    log = tmp / "infinity.log"
    url = f"http://127.0.0.1:{port}"
    rows = []
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            if not wait_until_answers(process, f"{url}/health", 200, 300, what="infinity_emb", log=log):
                raise SystemExit(f"Infinity did not become ready within 300 s; see {log}")
            for clients in args.clients:
                row = asyncio.run(run_clients(url, clients, args.duration, args.docs, args.words, "documents"))
                row.update(batching="infinity", rows_per_call=float("nan"), peak_rss_mib=peak_rss_mib(process.pid))
                rows.append(row)
                print(f"infinity, {clients} clients: {row['pairs_per_s']:.0f} pairs/s, p50 {row['p50_ms']:.0f} ms, "
                      f"p99 {row['p99_ms']:.0f} ms", file=sys.stderr)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model to serve (default: random-weight MiniLM-L6 cross-encoder shape)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64], help="concurrency levels")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per concurrency level")
    parser.add_argument("--docs", type=int, default=100, help="titles per request")
    parser.add_argument("--words", type=int, default=15, help="words per title")
    parser.add_argument("--modes", nargs="+", choices=("on", "off"), default=["on", "off"], help="batching modes")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads of the server (default: all cores)")
    parser.add_argument("--cache-dir", help="ONNX export cache of the server")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra `crossrank serve` argument")
    parser.add_argument("--json", help="write the rows as JSON to this file")
    parser.add_argument("--infinity-python", help="Python with infinity-emb[server,torch]: adds Infinity's rows")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="crossrank-load-") as tmp:
        model = args.model
        if model is None:
            from crossrank.models.synthetic import build_random_model

            print("building a random-weight ms-marco-MiniLM-L6-v2-shaped model (6 layers)...", file=sys.stderr)
            model = str(build_random_model(Path(tmp) / "model", layers=6))
        rows = []
        for mode in args.modes:
            serve_args = ["--model", model, "--name", "bench", "--max-documents", str(max(args.docs, 1000)),
                          "--deadline", "300", *args.serve_arg]
            if args.cache_dir:
                serve_args += ["--cache-dir", args.cache_dir]
            if args.threads:
                serve_args += ["--threads", str(args.threads)]
            if mode == "off":
                serve_args.append("--no-batching")
            with ServerProcess(serve_args, log_path=Path(tmp) / f"server-{mode}.log") as server:
                for clients in args.clients:
                    rows_before, calls_before = batch_counters(server.url)
                    row = asyncio.run(run_clients(server.url, clients, args.duration, args.docs, args.words))
                    rows_after, calls_after = batch_counters(server.url)
                    row["rows_per_call"] = (rows_after - rows_before) / max(calls_after - calls_before, 1)
                    row["batching"] = mode
                    row["peak_rss_mib"] = peak_rss_mib(server.pid())
                    rows.append(row)
                    print(f"batching {mode}, {clients} clients: {row['pairs_per_s']:.0f} pairs/s, "
                          f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms", file=sys.stderr)
        if args.infinity_python:
            rows += infinity_rows(args, model, Path(tmp))
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(markdown(rows))
    print(f"\n{os.cpu_count()} CPUs, load average at the end {load[0]:.1f}; {args.docs} titles x {args.words} words "
          f"per request, {args.duration:.0f} s per row")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
