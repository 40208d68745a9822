"""Memory of large single-document requests, measured on a real ``crossrank serve`` (RSS from /proc).

One 9.5 MB document with ``max_tokens_per_doc`` took the server from 521 MiB to 3.2 GiB: the
tokenizer read the whole document before cutting it. The tokenizer now reads only the head of a
text that can be kept, so what a request costs is bounded by its body, not by its tokens.
The bounds here are generous (hundreds of MB); ``benchmarks/memory_burst.py`` gives the figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crossrank import Encoder, Reranker
from crossrank.server.launch import ServerProcess

httpx = pytest.importorskip("httpx")

if not Path("/proc/self/status").is_file():  # pragma: no cover
    pytest.skip("reads memory from /proc", allow_module_level=True)

MB = 1024 * 1024
WORDS = "crocs clog sandal boot leather kids classic lined comfort work shoe charm".split()


def words(megabytes: float) -> str:
    text = " ".join(WORDS[i % len(WORDS)] + str(i % 7) for i in range(int(megabytes * 1_000_000 / 7)))
    return text[: int(megabytes * 1_000_000)]


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def test_tokenizing_a_long_text_costs_what_its_kept_tokens_cost(minilm_dir: Path) -> None:
    """In a fresh process: each way of tokenizing a 10 MB document (pair, windows, single text,
    cut after N tokens, a 10 MB query) raises the peak RSS by far less than the 1.3 GB that
    tokenizing the whole document took."""
    script = f"""
import sys
from crossrank.tokenize import PairTokenizer, load_tokenizer
tok = PairTokenizer(load_tokenizer(__import__("pathlib").Path({str(minilm_dir)!r})), 512)
doc = ("crocs clog sandal boot leather " * 400_000)[:10_000_000]
def hwm():
    return int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]) // 1024
base = hwm()
tok.encode([("q", doc)]); tok.encode([(doc, "d")]); tok.encode([("q", doc)], max_tokens=10**9)
tok.encode_windows([("q", doc)], 128); tok.encode_windows([("q", doc)], 128, 10**6)
tok.cut_texts([doc], 4096); tok.cut_texts([doc], 10**9); tok.encode_texts([doc])
print(hwm() - base)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    grown_mb = int(out.stdout.split()[-1])
    assert grown_mb < 300, f"peak RSS grew by {grown_mb} MB"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, bert_dir: Path, minilm_dir: Path, model_cache: Path,
           bert_reranker: Reranker, minilm_encoder: Encoder) -> Iterator[ServerProcess]:
    """A server on the tiny models, their ONNX files already in the cache."""
    root = tmp_path_factory.mktemp("memory")
    config = root / "config.yaml"
    config.write_text(
        f"inference:\n  msmarco:\n    type: cross-encoder\n    model: file://{bert_dir}\n"
        f"  minilm:\n    type: bi-encoder\n    model: file://{minilm_dir}\n    dim: 384\n", encoding="utf-8")
    with ServerProcess(["--config", str(config), "--cache-dir", str(model_cache)], log_path=root / "log") as process:
        yield process


BURSTS: list[tuple[str, Any]] = [
    ("/v2/rerank", lambda d: {"model": "msmarco", "query": "crocs", "documents": [d], "max_tokens_per_doc": 10**9}),
    ("/v1/rerank", lambda d: {"model": "msmarco", "query": "crocs", "documents": [d], "max_chunks_per_doc": 8}),
    ("/rerank", lambda d: {"query": "crocs", "texts": [d], "truncate": False}),
    ("/embed", lambda d: {"inputs": [d]}),
    ("/v1/embeddings", lambda d: {"input": [d], "model": "minilm"}),
]


def test_concurrent_multi_megabyte_documents_keep_the_servers_memory_bounded(server: ServerProcess) -> None:
    """Three concurrent 3 MB single-document requests on each of five formats: the peak RSS
    stays within 400 MB of the level before (it was gigabytes) and RSS comes back to within
    200 MB of it."""
    pid = server.pid()
    with httpx.Client(base_url=server.url, timeout=120) as client:  # warm every path once
        for path, make in BURSTS:
            client.post(path, json=make("crocs clog"))
    baseline = status_kb(pid, "VmRSS") // 1024
    Path(f"/proc/{pid}/clear_refs").write_text("5", encoding="ascii")  # VmHWM := VmRSS
    doc = words(3)
    statuses: list[int] = []

    def send(path: str, body: bytes) -> None:
        response = httpx.post(server.url + path, content=body, timeout=120,
                              headers={"content-type": "application/json"})
        statuses.append(response.status_code)

    for path, make in BURSTS:
        body = json.dumps(make(doc)).encode()
        threads = [threading.Thread(target=send, args=(path, body)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    peak = status_kb(pid, "VmHWM") // 1024
    threading.Event().wait(2.0)  # the schedulers give freed memory back after a second idle
    after = status_kb(pid, "VmRSS") // 1024
    assert set(statuses) <= {200, 413}, statuses
    assert peak - baseline < 400, f"baseline {baseline} MB, peak {peak} MB"
    assert after - baseline < 200, f"baseline {baseline} MB, after {after} MB"
