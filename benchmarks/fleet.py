"""Replicas behind HAProxy on this machine: pairs/s with 1, 2 and 3 replicas, one replica without
the balancer (what the balancer costs), and a failover run (SIGKILL one replica, SIGTERM another
under load) counting client-visible failures and wrong answers.

    python benchmarks/fleet.py                                # random-weight MiniLM-L6 shape
    python benchmarks/fleet.py --model DIR --duration 20 --clients 16 --json out.json

Every replica runs ``--threads 1``; on a 2-core machine 2 replicas are the most that can help, and
the third only shares the same cores (HAProxy and the load generator take CPU too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from crossrank.server.fleet import Balancer
from crossrank.server.launch import ServerProcess

WORDS = ("crocs clog sandal boot leather kids classic lined comfort work shoe charm pack white black slide "
         "waterproof hiking trail running lightweight summer winter foam strap buckle").split()


def requests(count: int, docs: int) -> list[tuple[str, dict[str, Any], int]]:
    """Mixed formats: Cohere, TEI and Weaviate reranks of ``docs`` short titles each."""
    rng = random.Random(7)
    out = []
    for i in range(count):
        query = f"crocs {WORDS[i % len(WORDS)]}"
        texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(docs)]
        out.append([("/v1/rerank", {"query": query, "documents": texts}, docs),
                    ("/rerank", {"query": query, "texts": texts}, docs),
                    ("/rerank", {"query": query, "documents": texts}, docs)][i % 3])
    return out


def scores(path: str, body: dict[str, Any], data: Any) -> list[float]:
    if path == "/v1/rerank":
        return [r["relevance_score"] for r in sorted(data["results"], key=lambda r: r["index"])]
    if "texts" in body:
        return [r["score"] for r in sorted(data, key=lambda r: r["index"])]
    return [s["score"] for s in data["scores"]]


def load(url: str, work: list[tuple[str, dict[str, Any], int]], clients: int, seconds: float,
         expected: list[list[float]] | None = None, chaos: Any = None) -> dict[str, Any]:
    stats: dict[str, Any] = {"pairs": 0, "answers": 0, "failures": 0, "wrong": 0, "status": {}}

    async def worker(seed: int, client: httpx.AsyncClient, stop: float) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop:
            k = rng.randrange(len(work))
            path, body, pairs = work[k]
            try:
                response = await client.post(path, json=body)
            except httpx.HTTPError:
                stats["failures"] += 1
                continue
            stats["status"][response.status_code] = stats["status"].get(response.status_code, 0) + 1
            if response.status_code != 200:
                stats["failures"] += 1
                continue
            stats["answers"] += 1
            stats["pairs"] += pairs
            if expected is not None and any(abs(a - b) > 1e-5 for a, b in zip(scores(path, body, response.json()),
                                                                               expected[k])):
                stats["wrong"] += 1

    async def main() -> None:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            stop = time.monotonic() + seconds
            tasks = [worker(i, client, stop) for i in range(clients)]
            if chaos is not None:
                tasks.append(chaos())
            await asyncio.gather(*tasks)

    started = time.perf_counter()
    asyncio.run(main())
    stats["seconds"] = time.perf_counter() - started
    stats["pairs_per_s"] = round(stats["pairs"] / stats["seconds"])
    return stats


def start_replicas(count: int, model: str, cache: Path, logs: Path) -> list[ServerProcess]:
    replicas = [ServerProcess(["--model", model, "--cache-dir", str(cache), "--threads", "1", "--drain-seconds",
                               "1.5"], log_path=logs / f"replica{i}.log", startup_timeout=120) for i in range(count)]
    threads = [threading.Thread(target=r.start) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return replicas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="cross-encoder directory (default: random MiniLM-L6 shape)")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--docs", type=int, default=32, help="documents per request")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    work_dir = Path(tempfile.mkdtemp(prefix="crossrank-fleet-"))
    if args.model:
        model = args.model
    else:
        from crossrank.models.synthetic import build_random_model

        model = str(build_random_model(work_dir / "model", layers=args.layers))
    from crossrank import Reranker

    Reranker(model, cache_dir=work_dir / "cache")  # the export, once, before the replicas start
    work = requests(60, args.docs)
    rows: list[dict[str, Any]] = []
    replicas = start_replicas(3, model, work_dir / "cache", work_dir)
    try:
        with httpx.Client(base_url=replicas[0].url, timeout=60) as client:
            expected = [scores(p, b, client.post(p, json=b).raise_for_status().json()) for p, b, _ in work]
        direct = load(replicas[0].url, work, args.clients, args.duration, expected)
        rows.append({"setup": "1 replica, no balancer", **direct})
        for count in (1, 2, 3):
            (work_dir / f"lb{count}").mkdir()
            with Balancer([f"127.0.0.1:{r.port}" for r in replicas[:count]], work_dir / f"lb{count}") as lb:
                rows.append({"setup": f"{count} replica(s) behind HAProxy",
                             **load(lb.url, work, args.clients, args.duration, expected)})
        (work_dir / "failover").mkdir()
        with Balancer([f"127.0.0.1:{r.port}" for r in replicas], work_dir / "failover", check_ms=200) as lb:
            async def chaos() -> None:
                await asyncio.sleep(args.duration / 3)
                os.kill(replicas[0].pid(), signal.SIGKILL)
                await asyncio.sleep(args.duration / 3)
                replicas[1].terminate()

            rows.append({"setup": "3 behind HAProxy: SIGKILL 1, SIGTERM 1",
                         **load(lb.url, work, args.clients, args.duration, expected, chaos)})
    finally:
        for replica in replicas:
            replica.stop()
    print(f"\n{args.clients} clients, {args.docs} documents per request (Cohere/TEI/Weaviate mixed), "
          f"{args.duration:.0f} s each; {os.cpu_count()} cores, --threads 1 per replica\n")
    print("| setup | answers | pairs/s | failures seen by clients | wrong answers |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['setup']} | {r['answers']} | {r['pairs_per_s']} | {r['failures']} | {r['wrong']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    sys.exit(1 if rows[-1]["failures"] or rows[-1]["wrong"] else 0)


if __name__ == "__main__":
    main()
