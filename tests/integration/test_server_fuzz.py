"""A fuzz pass over a real ``crossrank serve``: no input may get a 5xx or print a traceback.

Two parts, both against one server with an API key and a BM25 search index:

* schemathesis against the server's own OpenAPI document, seeded and with a bounded number of
  examples per operation, so that a run is repeatable and takes seconds;
* hand-made hostile bodies sent as raw bytes to every POST route: invalid UTF-8, lone
  surrogates as UTF-8 bytes and as JSON escapes, UTF-16 with and without a byte order mark, a
  UTF-8 byte order mark, numbers past float range, deep nesting, NaN/Infinity, wrong types and
  an empty body.

Then the server's log (its stdout and stderr) must hold no traceback.
"""

from __future__ import annotations

import codecs
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crossrank.retrieval import Record, build_index
from crossrank.server.launch import ServerProcess

httpx = pytest.importorskip("httpx")

KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, bert_dir: Path, minilm_dir: Path,
           model_cache: Path) -> Iterator[tuple[ServerProcess, Path]]:
    root = tmp_path_factory.mktemp("fuzz-server")
    build_index(root / "shoes.idx", [Record(f"s{i}", t) for i, t in enumerate(
        ["crocs classic clog", "leather hiking boots", "kids sandals for the summer", "wool socks"])])
    config = root / "config.yaml"
    config.write_text(
        "inference:\n"
        f"  msmarco:\n    type: cross-encoder\n    model: file://{bert_dir}\n"
        f"  minilm:\n    type: bi-encoder\n    model: file://{minilm_dir}\n    dim: 384\n"
        f"search:\n  shoes:\n    index: {root / 'shoes.idx'}\n    candidates: 4\n",
        encoding="utf-8",
    )
    log = root / "server.log"
    args = ["--config", str(config), "--cache-dir", str(model_cache), "--api-key", KEY, "--max-documents", "64"]
    with ServerProcess(args, log_path=log) as process:
        yield process, log


def no_traceback(log: Path) -> None:
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in text and "Exception in ASGI application" not in text, text[-4000:]


# -- schemathesis over the OpenAPI document --------------------------------------------------------
def test_schema_fuzz_finds_no_server_error(server: tuple[ServerProcess, Path], tmp_path: Path) -> None:
    pytest.importorskip("schemathesis")
    process, log = server
    (tmp_path / "schemathesis.toml").write_text(  # the model names the path parameters must hold
        '[[operations]]\ninclude-path = "/inference/cross/{name}"\nparameters = { "path.name" = "msmarco" }\n'
        '[[operations]]\ninclude-path = "/inference/encoder/{name}"\nparameters = { "path.name" = "minilm" }\n',
        encoding="utf-8")
    command = [str(Path(sys.executable).with_name("schemathesis")), "run", f"{process.url}/openapi.json",
               "--checks", "not_a_server_error", "--max-examples", "6", "--seed", "7", "--workers", "1",
               "--phases", "examples,coverage,fuzzing", "--generation-database", "none", "--no-shrink",
               "--header", f"Authorization: Bearer {KEY}", "--request-timeout", "30", "--no-color"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout), result.stdout[-2000:]
    no_traceback(log)


# -- hostile bodies as raw bytes -------------------------------------------------------------------
#: every POST route, with a valid body whose first text is where the hostile text goes
ROUTES: dict[str, dict[str, Any]] = {
    "/inference/cross/msmarco": {"input": [{"query": "crocs", "text": "TEXT"}]},
    "/inference/encoder/minilm": {"texts": ["TEXT", "boot"]},
    "/v1/rerank": {"query": "crocs", "documents": [{"text": "TEXT", "n": 1}, "boot"], "return_documents": True},
    "/v2/rerank": {"query": "crocs", "documents": ["TEXT", "boot"], "return_documents": True, "top_n": 1},
    "/rerank": {"query": "crocs", "texts": ["TEXT", "boot"], "return_text": True},
    "/rerank#weaviate": {"query": "crocs", "documents": ["TEXT", "boot"]},
    "/embed": {"inputs": ["TEXT", "boot"]},
    "/v1/embeddings": {"input": ["TEXT", "boot"]},
    "/search": {"query": "TEXT", "retriever": "bm25", "rerank": False},
    "/search#rerank": {"query": "TEXT"},
}


def valid(route: str) -> bytes:
    return json.dumps(ROUTES[route]).encode()


def bodies(route: str) -> dict[str, bytes]:
    """Hostile variants of the route's valid body (``TEXT`` is where a text goes)."""
    body = valid(route)
    text = body.decode()
    return {
        "invalid UTF-8": body.replace(b"TEXT", b"cl\xffog \xc3("),
        "lone surrogate as UTF-8 bytes": body.replace(b"TEXT", b"clog \xed\xa0\x80"),
        "low surrogate as UTF-8 bytes": body.replace(b"TEXT", b"\xed\xbf\xbf"),
        "surrogate pair as UTF-8 bytes": body.replace(b"TEXT", b"\xed\xa0\xbd\xed\xb8\x80"),
        "lone surrogate as a JSON escape": body.replace(b"TEXT", b"clog \\ud83d"),
        "UTF-16 with a BOM": codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
        "UTF-16 without a BOM": text.encode("utf-16-be"),
        "UTF-16 with an unpaired surrogate": codecs.BOM_UTF16_LE + text.replace("TEXT", "\ud800").encode(
            "utf-16-le", "surrogatepass"),
        "UTF-32": text.encode("utf-32"),
        "UTF-8 BOM": codecs.BOM_UTF8 + body,
        "1e999": body.replace(b'"TEXT"', b"1e999"),
        "-1e999 as top_n": body.replace(b"{", b'{"top_n": -1e999, ', 1),
        "10**400": body.replace(b'"TEXT"', str(10**400).encode()),
        "a 5000-digit integer": body.replace(b'"TEXT"', b"9" * 5000),
        "NaN": body.replace(b'"TEXT"', b"NaN"),
        "Infinity in a document object": body.replace(b'"TEXT"', b'{"text": "clog", "score": Infinity}'),
        "deep nesting": body.replace(b'"TEXT"', b"[" * 50_000 + b"]" * 50_000),
        "deep objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        "a number for a text": body.replace(b'"TEXT"', b"7"),
        "null for a text": body.replace(b'"TEXT"', b"null"),
        "an object for the list": re.sub(rb"\[.*\]", b'{"x": 1}', body, count=1),
        "a bare string": b'"crocs"',
        "a bare array": b"[1, 2, 3]",
        "truncated": body[: len(body) // 2],
        "trailing garbage": body + b" }",
        "empty": b"",
        "whitespace": b"  \r\n ",
        "NUL byte": body.replace(b"TEXT", b"clog\x00boot"),
        "escaped NUL": body.replace(b"TEXT", b"clog\\u0000boot"),
    }


@pytest.mark.parametrize("route", list(ROUTES))
def test_hostile_bodies_get_a_4xx_envelope_on_every_post_route(server: tuple[ServerProcess, Path],
                                                              route: str) -> None:
    process, log = server
    path = route.split("#")[0]
    statuses: dict[str, int] = {}
    with httpx.Client(base_url=process.url, timeout=60) as client:
        ok = client.post(path, content=valid(route), headers=AUTH)
        assert ok.status_code == 200, ok.text
        for name, body in bodies(route).items():
            response = client.post(path, content=body, headers={**AUTH, "content-type": "application/json"})
            statuses[name] = response.status_code
            assert response.status_code < 500, (name, response.status_code, response.text[:500])
            if response.status_code >= 400:
                error = response.json()["error"]
                assert error["type"] and error["message"], (name, response.text[:500])
    refused = {name for name, status in statuses.items() if status >= 400}
    must_refuse = {"invalid UTF-8", "lone surrogate as UTF-8 bytes", "low surrogate as UTF-8 bytes",
                   "surrogate pair as UTF-8 bytes", "UTF-16 with a BOM", "UTF-16 without a BOM",
                   "UTF-16 with an unpaired surrogate", "UTF-32", "1e999", "-1e999 as top_n", "a 5000-digit integer",
                   "NaN", "Infinity in a document object", "deep nesting", "deep objects", "a bare string",
                   "a bare array", "truncated", "trailing garbage", "empty", "whitespace", "NUL byte",
                   "lone surrogate as a JSON escape"}
    assert must_refuse <= refused, sorted(must_refuse - refused)
    assert statuses["UTF-8 BOM"] == 200  # RFC 8259 lets a parser skip it
    no_traceback(log)
