"""An answer leaves the server in one socket write, head and body together.

uvicorn wrote the head and the body in separate calls; a replica killed between them left the
balancer a head announcing a body that never came. It had passed the head on, so it could not
retry the request elsewhere, and the client got a truncated answer (seen in the fleet's
SIGKILL test as ``peer closed connection without sending complete message body``). A process
that dies after one whole write has sent all of the answer or none of it, and none is an
empty reply the balancer retries on another replica.
"""

from __future__ import annotations

import asyncio.selector_events
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from crossrank.server import ModelEntry, ServerSettings, create_app, load_served_models  # noqa: E402
from crossrank.server.connections import protocol_class  # noqa: E402
from crossrank.server.launch import free_port  # noqa: E402

Socket = asyncio.selector_events._SelectorSocketTransport  # type: ignore[attr-defined]


@pytest.fixture()
def socket_writes(bert_dir: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[bytes]]]:
    """A real ``crossrank`` app served by uvicorn with the server's protocol on 127.0.0.1, and
    every non-empty write its connections make to their sockets."""
    writes: list[bytes] = []
    write = Socket.write

    def recorded(self: object, data: bytes) -> None:
        if data:
            writes.append(bytes(data))
        write(self, data)

    monkeypatch.setattr(Socket, "write", recorded)
    settings = ServerSettings(cache_dir=str(model_cache))
    app = create_app(load_served_models([ModelEntry("msmarco", "cross-encoder", f"file://{bert_dir}")], settings),
                     settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           http=protocol_class(5.0), access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", writes
    finally:
        server.should_exit = True
        thread.join(30)


def test_each_answer_is_one_write_with_its_head_and_whole_body(socket_writes: tuple[str, list[bytes]]) -> None:
    url, writes = socket_writes
    texts = [f"passage {i} about clogs and sandals " * 8 for i in range(40)]
    calls = [("post", "/rerank", {"query": "crocs", "texts": texts, "return_text": True}),  # several KB
             ("post", "/v1/rerank", {"query": "crocs", "documents": texts[:3]}),
             ("post", "/rerank", {"query": "crocs"}),  # 422 with the JSON envelope
             ("get", "/health", None),
             ("get", "/no-such-route", None)]  # 404
    answers = []
    with httpx.Client(base_url=url, timeout=60) as client:  # one kept-alive connection for all
        for method, path, body in calls:
            answers.append(client.request(method, path, json=body))
    assert [a.status_code for a in answers] == [200, 200, 422, 200, 404]
    assert len(answers[0].content) > 4096
    time.sleep(0.2)
    assert len(writes) == len(calls), [w[:40] for w in writes]
    for write, answer in zip(writes, answers, strict=True):
        head, _, body = write.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {answer.status_code} ".encode())
        length = re.search(rb"(?i)content-length: (\d+)", head)
        assert length is not None and int(length.group(1)) == len(body) == len(answer.content)
        assert body == answer.content
