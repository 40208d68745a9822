"""A real ``crossrank serve`` process on 127.0.0.1: the Cohere SDK, mixed-format load, a flood,
SIGTERM under load and start-up failures (the fuzz pass is tests/integration/test_server_fuzz.py). Bounded in
count and time.

``CROSSRANK_LOAD_SECONDS`` sets the length of the mixed load (default 20 s).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossrank import Reranker
from crossrank.server.launch import ServerProcess

httpx = pytest.importorskip("httpx")

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
LOAD_SECONDS = float(os.environ.get("CROSSRANK_LOAD_SECONDS", "20"))

_WORDS = ("crocs clog sandal boot leather kids classic lined comfort work shoe charm pack white black "
          "slide waterproof hiking trail running lightweight summer winter foam strap buckle").split()


def titles(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 15))) for _ in range(count)]


def write_config(path: Path, bert_dir: Path, minilm_dir: Path) -> Path:
    path.write_text(
        "inference:\n"
        f"  msmarco:\n    type: cross-encoder\n    model: file://{bert_dir}\n"
        f"  minilm:\n    type: bi-encoder\n    model: file://{minilm_dir}\n    dim: 384\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, bert_dir: Path, minilm_dir: Path) -> Path:
    return write_config(tmp_path_factory.mktemp("serve") / "config.yaml", bert_dir, minilm_dir)


def serve(config: Path, cache: Path, *extra: str, log: Path | None = None) -> ServerProcess:
    return ServerProcess(["--config", str(config), "--cache-dir", str(cache), *extra], log_path=log)


@pytest.fixture(scope="module")
def server(config: Path, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    with serve(config, model_cache, "--api-key", KEY, log=log) as process:
        yield process


# -- the official Cohere SDK ----------------------------------------------------------------------
def test_cohere_sdk_v1_and_v2_work_unchanged(server: ServerProcess, bert_reranker: Reranker) -> None:
    cohere = pytest.importorskip("cohere")
    docs = titles(12, seed=1)
    want = bert_reranker.score("crocs clog", docs)
    order = list(np.argsort(-want, kind="stable"))

    v2 = cohere.ClientV2(api_key=KEY, base_url=server.url)
    response = v2.rerank(model="msmarco", query="crocs clog", documents=docs, top_n=5)
    assert [r.index for r in response.results] == order[:5]
    np.testing.assert_allclose([r.relevance_score for r in response.results], want[order[:5]], rtol=1e-5)

    v1 = cohere.Client(api_key=KEY, base_url=server.url)
    response = v1.rerank(model="msmarco", query="crocs clog", documents=docs, return_documents=True)
    assert [r.index for r in response.results] == order
    assert [r.document.text for r in response.results] == [docs[i] for i in order]

    with pytest.raises(cohere.errors.UnauthorizedError):
        cohere.ClientV2(api_key="wrong", base_url=server.url).rerank(model="msmarco", query="q", documents=["a"])
    with pytest.raises(cohere.errors.NotFoundError):
        v2.rerank(model="rerank-v3.5", query="q", documents=["a"])


# -- mixed-format load ----------------------------------------------------------------------------
def _templates() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(6):
        query = f"crocs {_WORDS[i]}"
        docs = titles(random.Random(i).randint(1, 40), seed=100 + i)
        out += [
            ("/inference/cross/msmarco", {"input": [{"query": query, "text": d} for d in docs]}),
            ("/v1/rerank", {"model": "msmarco", "query": query, "documents": docs, "return_documents": True}),
            ("/v2/rerank", {"model": "msmarco", "query": query, "documents": docs, "top_n": 3}),
            ("/rerank", {"query": query, "texts": docs, "raw_scores": i % 2 == 0}),
            ("/rerank", {"query": query, "documents": docs}),
        ]
        texts = docs[: 1 + i * 3]
        out += [
            ("/inference/encoder/minilm", {"texts": texts}),
            ("/v1/embeddings", {"input": texts, "model": "minilm"}),
            ("/embed", {"inputs": texts}),
        ]
    return out


def extract(path: str, body: dict[str, Any], data: Any) -> dict[Any, float] | np.ndarray:
    """The numbers of an answer, keyed by input index where the format reorders."""
    if path == "/inference/cross/msmarco":
        return np.asarray(data["scores"])
    if path in ("/v1/rerank", "/v2/rerank"):
        return {r["index"]: r["relevance_score"] for r in data["results"]}
    if path == "/rerank":
        if "texts" in body:
            return {r["index"]: r["score"] for r in data}
        return np.asarray([s["score"] for s in data["scores"]])
    if path == "/inference/encoder/minilm":
        return np.asarray(data["embeddings"])
    if path == "/v1/embeddings":
        return np.asarray([d["embedding"] for d in data["data"]])
    return np.asarray(data)


def same(a: dict[Any, float] | np.ndarray, b: dict[Any, float] | np.ndarray) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-5 + 1e-4 * abs(b[k]) for k in a)
    return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and bool(
        np.allclose(a, b, rtol=1e-4, atol=1e-5))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def test_64_clients_mixed_formats_get_their_own_scores(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    templates = _templates()
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
        expected = [extract(p, b, client.post(p, json=b).raise_for_status().json()) for p, b in templates]

    stats: dict[str, Any] = {"latency": [], "status": {}, "mismatch": [], "errors": []}

    async def worker(seed: int, client: Any, stop: float) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop:
            k = rng.randrange(len(templates))
            path, body = templates[k]
            started = time.perf_counter()
            try:
                response = await client.post(path, json=body)
            except httpx.HTTPError as exc:
                stats["errors"].append(repr(exc))
                continue
            stats["latency"].append(time.perf_counter() - started)
            stats["status"][response.status_code] = stats["status"].get(response.status_code, 0) + 1
            if response.status_code == 200 and not same(extract(path, body, response.json()), expected[k]):
                stats["mismatch"].append((path, k))

    async def main() -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60, limits=limits) as client:
            stop = time.monotonic() + LOAD_SECONDS
            await asyncio.gather(*(worker(i, client, stop) for i in range(64)))

    asyncio.run(main())
    lat = stats["latency"]
    with capsys.disabled():
        print(f"\nmixed load, 64 clients, {LOAD_SECONDS:.0f} s: {len(lat)} requests, statuses {stats['status']}, "
              f"p50 {percentile(lat, 50) * 1000:.0f} ms, p99 {percentile(lat, 99) * 1000:.0f} ms")
    assert not stats["errors"], stats["errors"][:5]
    assert set(stats["status"]) == {200}, stats["status"]
    assert not stats["mismatch"], stats["mismatch"][:10]
    assert len(lat) >= 64


def exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send one request on a kept-alive connection and read its whole answer."""
    sock.sendall(request)
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection before answering"
        reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection in the middle of an answer"
        body += chunk
    return head + b"\r\n\r\n" + body


def post(host: str, path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def test_idle_keep_alive_connection_outlives_client_pool_expiry(server: ServerProcess) -> None:
    """The server must not close an idle connection before clients do (httpx expires them at 5 s),
    or a request sent as the server closes is lost to a reset."""
    host, port = server.url.split("//")[1].split(":")
    request = (f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        for attempt in range(2):
            assert exchange(sock, request).startswith(b"HTTP/1.1 200")
            if attempt == 0:
                time.sleep(6.5)


def test_bad_bodies_are_answered_on_a_connection_that_stays_open(server: ServerProcess) -> None:
    """Half an emoji and absurd nesting are 4xx answers, not errors that drop the connection
    (and with it the client's next request)."""
    host, port = server.url.split("//")[1].split(":")
    good = post(host, "/v1/rerank", b'{"query": "crocs", "documents": ["clog", "boot"]}')
    bad = [post(host, "/v1/rerank", b'{"query": "crocs", "documents": ["clog \\ud83d"]}'),
           post(host, "/rerank", b'{"query": "crocs", "texts": ["\\udc00"]}'),
           post(host, "/rerank", b"[" * 100_000 + b"]" * 100_000)]
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        for request in bad:
            reply = exchange(sock, request)
            assert re.match(rb"HTTP/1.1 4\d\d", reply) and b'"error"' in reply, reply[:300]
            assert exchange(sock, good).startswith(b"HTTP/1.1 200")


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_a_client_that_leaves_has_its_queued_work_dropped(server: ServerProcess) -> None:
    rows = 'crossrank_batch_rows_sum{model="msmarco"}'
    gone = 'crossrank_errors_total{type="client_closed"}'
    before = httpx.get(f"{server.url}/metrics").text
    body = {"query": "crocs", "texts": titles(8000, seed=3)}
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{server.url}/rerank", json=body, headers=AUTH, timeout=1.0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        after = httpx.get(f"{server.url}/metrics").text
        if metric(after, 'crossrank_queue_depth{model="msmarco"}') == 0 and metric(after, gone) > metric(before, gone):
            break
        time.sleep(0.1)
    assert metric(after, gone) == metric(before, gone) + 1
    assert metric(after, rows) - metric(before, rows) < 8000  # the rest never reached the model


# -- overload -------------------------------------------------------------------------------------
def test_flood_gets_fast_429s_while_health_answers_and_then_recovers(
    config: Path, model_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = titles(48, seed=5)
    body = {"query": "crocs", "texts": docs}
    outcome: dict[str, list[float]] = {"429": [], "200": [], "other": [], "health": []}
    retry_after: set[str] = set()

    async def flood(client: Any, stop: float) -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            response = await client.post("/rerank", json=body)
            elapsed = time.perf_counter() - started
            key = str(response.status_code) if response.status_code in (200, 429) else "other"
            outcome[key].append(elapsed)
            if response.status_code == 429:
                retry_after.add(response.headers.get("retry-after", ""))

    async def health(stop: float, url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = await client.get("/health")
                assert response.status_code == 200
                outcome["health"].append(time.perf_counter() - started)
                await asyncio.sleep(0.2)

    async def main(url: str) -> None:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            stop = time.monotonic() + 6
            await asyncio.gather(health(stop, url), *(flood(client, stop) for _ in range(32)))

    # room for one request of 48 pairs at a time: the other flooders are refused
    with serve(config, model_cache, "--max-queue", "64", "--batch-size", "16") as process:
        asyncio.run(main(process.url))
        after = httpx.post(f"{process.url}/rerank", json=body, timeout=30)
        metrics = httpx.get(f"{process.url}/metrics", timeout=30).text
    with capsys.disabled():
        print(f"\nflood: {len(outcome['429'])} x 429 (median {percentile(outcome['429'], 50) * 1000:.1f} ms), "
              f"{len(outcome['200'])} x 200 (median {percentile(outcome['200'], 50) * 1000:.0f} ms), "
              f"/health median {percentile(outcome['health'], 50) * 1000:.1f} ms over {len(outcome['health'])} polls")
    assert outcome["429"] and outcome["200"] and not outcome["other"]
    assert retry_after == {"1"}
    assert len(outcome["health"]) >= 5
    assert after.status_code == 200 and len(after.json()) == len(docs)
    assert 'crossrank_queue_depth{model="msmarco"} 0.0' in metrics
    assert 'crossrank_errors_total{type="overloaded"}' in metrics


# -- graceful shutdown ----------------------------------------------------------------------------
def test_sigterm_under_load_finishes_in_flight_requests(config: Path, model_cache: Path) -> None:
    docs = titles(200, seed=9)

    async def one(client: Any, i: int) -> Any:
        return await client.post("/rerank", json={"query": f"crocs {i}", "texts": docs})

    async def main(process: ServerProcess) -> list[Any]:
        async with httpx.AsyncClient(base_url=process.url, timeout=120,
                                     limits=httpx.Limits(max_connections=32)) as client:
            tasks = [asyncio.ensure_future(one(client, i)) for i in range(24)]
            async with httpx.AsyncClient(base_url=process.url, timeout=10) as probe:
                while True:  # wait until the server holds queued work
                    text = (await probe.get("/metrics")).text
                    match = re.search(r'crossrank_queue_depth\{model="msmarco"\} (\S+)', text)
                    if match and float(match.group(1)) >= 400:
                        break
                    await asyncio.sleep(0.02)
            process.terminate()
            return list(await asyncio.gather(*tasks, return_exceptions=True))

    process = serve(config, model_cache, "--graceful-timeout", "60").start()
    try:
        responses = asyncio.run(main(process))
        code = process.wait(90)
    finally:
        process.stop()
    failures = [r for r in responses if not (hasattr(r, "status_code") and r.status_code == 200)]
    assert not failures, failures[:3]
    assert all(len(r.json()) == len(docs) for r in responses)
    assert code == 0


# -- start-up failures ----------------------------------------------------------------------------
def test_a_model_that_fails_to_load_stops_start_up(tmp_path: Path, model_cache: Path, bert_dir: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"inference:\n  good:\n    model: {bert_dir}\n  broken:\n    model: file://{broken}\n",
                   encoding="utf-8")
    process = ServerProcess(["--config", str(bad), "--cache-dir", str(model_cache)])
    result = subprocess.run(process.args, capture_output=True, text=True, timeout=180)
    assert result.returncode != 0
    assert "broken" in result.stderr and "failed to load" in result.stderr
    missing = ServerProcess(["--model", str(tmp_path / "nope")])
    result = subprocess.run(missing.args, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "does not exist" in result.stderr


def test_a_taken_port_fails_before_the_models_load(model_cache: Path, bert_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = ServerProcess(["--model", str(bert_dir), "--cache-dir", str(model_cache)]).args
        command[command.index("--port") + 1] = str(port)
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "choose another --port" in result.stderr
    assert "loading" not in result.stdout  # refused before any model was read


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed it."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data, time.monotonic()


def test_stalled_clients_are_cut_off_and_cannot_hold_sockets(model_cache: Path, bert_dir: Path) -> None:
    """A client that connects and says nothing, or sends half a request and stops, used to hold
    its socket until the server stopped. Now: 408 and closed after --client-timeout from the
    request's first byte, closed after --keep-alive-timeout when nothing was sent, while a slow
    request that completes in time, and a kept-alive connection idle past the client timeout, work."""
    args = ["--model", str(bert_dir), "--cache-dir", str(model_cache), "--client-timeout", "1.5",
            "--keep-alive-timeout", "5"]
    server = ServerProcess(args)
    # started with a soft limit of 256 open files (one per connection), as many systems start
    # services with 1,024; the server lifts it to the hard limit
    low_limit = ("import os, resource, sys; hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
                 "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard)); "
                 "os.execv(sys.argv[1], sys.argv[1:])")
    server.args = [sys.executable, "-c", low_limit, *server.args]
    with server:
        limits = Path(f"/proc/{server.pid()}/limits").read_text()
        soft, hard = re.search(r"Max open files\s+(\S+)\s+(\S+)", limits).groups()  # type: ignore[union-attr]
        assert soft == hard, limits
        host, port = server.url.split("//")[1].split(":")
        body = b'{"query": "crocs", "texts": ["clog", "boot"]}'
        head = (f"POST /rerank HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        stalls = {"silent": b"", "half the headers": head[:30], "half the body": head + body[:10]}
        sockets = {name: socket.create_connection((host, int(port)), timeout=30) for name in stalls}
        started = time.monotonic()
        for name, sent in stalls.items():
            sockets[name].sendall(sent)
        with socket.create_connection((host, int(port)), timeout=30) as slow:
            for piece in (head[:20], head[20:] + body[:10], body[10:]):  # complete within the deadline
                slow.sendall(piece)
                time.sleep(0.3)
            assert exchange(slow, b"").startswith(b"HTTP/1.1 200")
            time.sleep(2.5)  # idle past the client timeout, within keep-alive
            assert exchange(slow, head + body).startswith(b"HTTP/1.1 200")
        for name in ("half the headers", "half the body"):
            reply, closed = read_until_closed(sockets[name])
            assert reply.startswith(b"HTTP/1.1 408"), (name, reply[:200])
            assert b'"type": "request_timeout"' in reply and b"--client-timeout" in reply
            assert 1.0 < closed - started < 4.5, (name, closed - started)
        reply, closed = read_until_closed(sockets["silent"])
        assert reply == b"" and 4.5 < closed - started < 10, closed - started
        for sock in sockets.values():
            sock.close()
        assert httpx.post(f"{server.url}/rerank", content=body).status_code == 200


def test_an_answer_the_client_does_not_read_is_dropped_after_the_client_timeout(
    model_cache: Path, bert_dir: Path
) -> None:
    """An unread answer used to stay in the server's memory as long as the connection, which
    never closed. A client that reads none of it for --client-timeout is disconnected; one that
    reads slowly (about 130 kB/s, so the kernel's buffers absorb what it reads for seconds)
    stays connected and gets all of it."""
    args = ["--model", str(bert_dir), "--cache-dir", str(model_cache), "--client-timeout", "1.5"]
    text = "crocs clog " * 9000  # about 100 kB, echoed back: an answer of about 8 MB
    body = ('{"query": "crocs", "return_text": true, "texts": [' + ", ".join([f'"{text}"'] * 80) + "]}").encode()
    with ServerProcess(args) as server:
        host, port = server.url.split("//")[1].split(":")
        request = (f"POST /rerank HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body

        def client() -> socket.socket:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds little of it
            sock.settimeout(30)
            sock.connect((host, int(port)))
            sock.sendall(request)
            return sock

        def read_answer(sock: socket.socket, slow_seconds: float) -> tuple[int, int]:
            """(bytes of the body received, its declared length): 4 kB per 30 ms for
            ``slow_seconds``, then as fast as it comes."""
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, _, received = data.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
            got = len(received)
            slow_until = time.monotonic() + slow_seconds
            try:
                while got < length:
                    slow = time.monotonic() < slow_until
                    chunk = sock.recv(4096 if slow else 1 << 20)
                    if not chunk:
                        break
                    got += len(chunk)
                    if slow:
                        time.sleep(0.03)
            except ConnectionResetError:
                pass
            return got, length

        with client() as idle, client() as slow:
            got, length = read_answer(slow, slow_seconds=4.5)
            assert length > 7_000_000 and got == length
            time.sleep(4)
            got, length = read_answer(idle, slow_seconds=0)
            assert got < length  # disconnected with most of the answer unsent
        assert httpx.post(f"{server.url}/rerank", content=b'{"query": "q", "texts": ["a"]}').status_code == 200


def test_a_burst_of_bodies_past_max_inflight_bytes_gets_429_before_it_is_read(
    model_cache: Path, bert_dir: Path
) -> None:
    """Every request used to be read and parsed before any limit applied: 60 concurrent 9.6 MB
    bodies took the server to 1.7 GB before the queue refused them. Past --max-inflight-bytes a
    request is refused at once; a request alone always runs, whatever its size."""
    args = ["--model", str(bert_dir), "--cache-dir", str(model_cache), "--max-inflight-bytes", "1000"]
    with ServerProcess(args) as server:
        host, port = server.url.split("//")[1].split(":")

        def rerank(docs: int) -> tuple[bytes, bytes]:
            body = ('{"query": "crocs", "texts": [' + ", ".join(['"clog boot"'] * docs) + "]}").encode()
            head = (f"POST /rerank HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            return head, body

        big_head, big_body = rerank(60)  # about 800 bytes, held while it arrives
        small_head, small_body = rerank(20)  # about 290 bytes: together past 1,000
        small = small_head + small_body
        alone = b"".join(rerank(150))  # about 1,900 bytes
        assert len(big_body) < 1000 < len(big_body) + len(small_body)
        with socket.create_connection((host, int(port)), timeout=30) as first, \
                socket.create_connection((host, int(port)), timeout=30) as second:
            first.sendall(big_head + big_body[:100])
            time.sleep(0.5)
            reply = exchange(second, small)
            assert reply.startswith(b"HTTP/1.1 429"), reply[:300]
            assert b'"type":"overloaded"' in reply and b"--max-inflight-bytes" in reply
            assert re.search(rb"(?i)retry-after: 1", reply)
            first.sendall(big_body[100:])
            assert exchange(first, b"").startswith(b"HTTP/1.1 200")
            assert exchange(second, small).startswith(b"HTTP/1.1 200")  # the budget was given back
            assert exchange(second, alone).startswith(b"HTTP/1.1 200")
