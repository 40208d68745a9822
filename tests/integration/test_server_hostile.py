"""Hostile clients against a real ``crossrank serve``: keyless clients that announce large
bodies, bytes that are not HTTP, and requests that ``--graceful-timeout`` cuts short."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from crossrank.server.launch import ServerProcess

httpx = pytest.importorskip("httpx")

KEY = "hostile-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def read_head(sock: socket.socket) -> bytes:
    """The status line and headers of the next answer on ``sock`` (and any body bytes after them)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"the server closed the connection without an answer: {data!r}"
        data += chunk
    return data


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def envelope(reply: bytes) -> dict[str, Any]:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert re.search(rb"(?i)content-type: application/json", head), reply[:300]
    error: dict[str, Any] = json.loads(body)["error"]
    return error


@pytest.fixture(scope="module")
def server(model_cache: Path, bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    log = tmp_path_factory.mktemp("hostile") / "server.log"
    args = ["--model", str(bert_dir), "--cache-dir", str(model_cache), "--api-key", KEY,
            "--max-inflight-bytes", "1000000"]
    with ServerProcess(args, log_path=log) as process:
        yield process


def test_keyless_clients_announcing_large_bodies_cannot_lock_out_keyed_ones(server: ServerProcess) -> None:
    """14 connections that sent only headers with a large Content-Length and no key used to
    reserve the in-flight byte budget: every authenticated request got 429 for as long as they
    stayed. Now each is answered 401 at once, without a byte of its body sent (so none is read,
    held or parsed), and holds nothing while it stays connected."""
    host, port = server.url.split("//")[1].split(":")
    head = (f"POST /rerank HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: 500000\r\n\r\n").encode()  # two of them fill the budget of 1,000,000
    holders = [socket.create_connection((host, int(port)), timeout=10) for _ in range(14)]
    try:
        for sock in holders:
            sock.sendall(head)
        time.sleep(0.5)
        ok = httpx.post(f"{server.url}/rerank", json={"query": "crocs", "texts": ["clog", "boot"]},
                        headers=AUTH, timeout=30)
        assert ok.status_code == 200, ok.text
        big = {"query": "crocs", "texts": ["crocs clog " * 40_000] * 2}  # about 900 kB: it fits alone
        assert httpx.post(f"{server.url}/rerank", json=big, headers=AUTH, timeout=120).status_code == 200
        for sock in holders:
            reply = read_head(sock)  # no body was sent: the answer came from the headers alone
            assert reply.startswith(b"HTTP/1.1 401"), reply[:300]
    finally:
        for sock in holders:
            sock.close()
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'crossrank_errors_total{type="overloaded"}' not in metrics


@pytest.mark.parametrize("request_bytes", [
    b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
    b"POST /rerank HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n12345",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",  # a TLS hello
    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n",  # past h11's 16 KiB limit on a request head
], ids=["bad header name", "two lengths", "TLS hello", "huge request line"])
def test_bytes_that_are_not_http_get_a_400_json_envelope(server: ServerProcess, request_bytes: bytes) -> None:
    host, port = server.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request_bytes)
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:300]
    error = envelope(reply)
    assert error["type"] == "invalid_http" and "not valid HTTP/1.1" in error["message"]
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_requests_cut_by_the_graceful_timeout_get_a_503_envelope(model_cache: Path, bert_dir: Path,
                                                                 tmp_path: Path) -> None:
    """When --graceful-timeout ran out, the requests still in flight used to get uvicorn's
    plain-text 500 and a traceback in the log; now a 503 envelope that says why."""
    log = tmp_path / "server.log"
    args = ["--model", str(bert_dir), "--cache-dir", str(model_cache), "--graceful-timeout", "1",
            "--client-timeout", "60", "--max-documents", "100000"]
    process = ServerProcess(args, log_path=log).start()
    host, port = process.url.split("//")[1].split(":")
    scored: dict[str, Any] = {}
    texts = [f"crocs classic clog number {i} with a comfortable foam strap for the summer" for i in range(40_000)]

    def score() -> None:
        try:
            scored["response"] = httpx.post(f"{process.url}/rerank", json={"query": "crocs", "texts": texts},
                                            timeout=120)
        except httpx.HTTPError as exc:
            scored["response"] = exc

    try:
        body = b'{"query": "crocs", "texts": ["clog", "boot"]}'
        arriving = socket.create_connection((host, int(port)), timeout=60)  # its body half sent
        arriving.sendall((f"POST /rerank HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:10])
        worker = threading.Thread(target=score)
        worker.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the scheduler holds its rows
            text = httpx.get(f"{process.url}/metrics").text
            match = re.search(r'crossrank_queue_depth\{model="[^"]+"\} (\S+)', text)
            if match and float(match.group(1)) > 0:
                break
            time.sleep(0.05)
        process.terminate()
        reply = read_until_closed(arriving)
        arriving.close()
        worker.join(60)
        code = process.wait(60)
    finally:
        process.stop()
    assert reply.startswith(b"HTTP/1.1 503"), reply[:300]
    error = envelope(reply)
    assert error["type"] == "shutting_down" and "--graceful-timeout" in error["message"]
    response = scored["response"]
    assert isinstance(response, httpx.Response), response
    assert response.status_code == 503 and response.json()["error"]["type"] == "shutting_down", response.text[:300]
    assert code == 0
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in text and "Exception in ASGI application" not in text, text[-3000:]
