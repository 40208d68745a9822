"""Replicas behind a real load balancer (HAProxy, from Debian) on 127.0.0.1, and the readiness
semantics it acts on: ready only once loaded and warm; at SIGTERM readiness answers 503 at once
while requests are still served (``--drain-seconds``), then in-flight work finishes.

``CROSSRANK_FLEET_LOAD_SECONDS`` sets the length of the failover load (default 12 s).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crossrank.server.fleet import Balancer, haproxy_binary
from crossrank.server.launch import ServerProcess
from test_server_process import _templates, extract, same, write_config

httpx = pytest.importorskip("httpx")

LOAD_SECONDS = float(os.environ.get("CROSSRANK_FLEET_LOAD_SECONDS", "12"))


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, bert_dir: Path, minilm_dir: Path) -> Path:
    return write_config(tmp_path_factory.mktemp("fleet") / "config.yaml", bert_dir, minilm_dir)


def replica(config: Path, cache: Path, log: Path, drain: float = 1.5) -> ServerProcess:
    return ServerProcess(["--config", str(config), "--cache-dir", str(cache), "--threads", "1",
                          "--drain-seconds", str(drain), "--graceful-timeout", "30"], log_path=log)


def test_readiness_only_between_start_up_and_shutdown(bert_dir: Path, model_cache: Path) -> None:
    """Models are loaded and warmed before the app exists; it turns ready when it starts serving."""
    from fastapi.testclient import TestClient

    from crossrank.server import ModelEntry, ServerSettings, create_app, load_served_models

    settings = ServerSettings(cache_dir=str(model_cache))
    app = create_app(load_served_models([ModelEntry("msmarco", "cross-encoder", f"file://{bert_dir}")], settings),
                     settings)
    idle = TestClient(app)  # not started
    assert idle.get("/.well-known/ready").status_code == 503 and idle.get("/health").status_code == 503
    assert idle.get("/.well-known/live").status_code == 204
    with TestClient(app) as running:
        assert running.get("/.well-known/ready").status_code == 204
    assert idle.get("/.well-known/ready").status_code == 503  # stopped


def test_sigterm_fails_readiness_at_once_and_keeps_serving_through_the_drain(
    config: Path, model_cache: Path, tmp_path: Path
) -> None:
    process = replica(config, model_cache, tmp_path / "serve.log", drain=3).start()
    try:
        with httpx.Client(base_url=process.url, timeout=30) as client:
            assert client.get("/.well-known/ready").status_code == 204
            assert client.get("/health").status_code == 200
            process.terminate()
            time.sleep(0.2)
            assert client.get("/.well-known/ready").status_code == 503  # the balancer stops routing here...
            assert client.get("/health").status_code == 503
            assert client.get("/.well-known/live").status_code == 204
            answer = client.post("/rerank", json={"query": "crocs", "texts": ["clog", "sandal"]})
            assert answer.status_code == 200 and len(answer.json()) == 2  # ...while requests are still served
        assert process.wait(30) == 0
    finally:
        process.stop()


@pytest.fixture()
def fleet(config: Path, model_cache: Path, tmp_path: Path) -> Iterator[tuple[list[ServerProcess], Balancer]]:
    if haproxy_binary() is None:
        pytest.skip("haproxy is not installed and could not be (`make test` installs Debian's package, "
                    "needs root and apt-get)")
    replicas = [replica(config, model_cache, tmp_path / f"replica{i}.log") for i in range(3)]
    try:
        for process in replicas:  # started together, waited for together: they load in parallel
            process.startup_timeout = 90
        _start_all(replicas)
        with Balancer([f"127.0.0.1:{p.port}" for p in replicas], tmp_path, check_ms=200) as balancer:
            yield replicas, balancer
    finally:
        for process in replicas:
            process.stop()


def _start_all(replicas: list[ServerProcess]) -> None:
    import threading

    errors: list[BaseException] = []

    def start(process: ServerProcess) -> None:
        try:
            process.start()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(p,)) for p in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


@pytest.mark.timeout(120)
def test_three_replicas_survive_a_sigkill_and_a_sigterm_with_no_client_visible_failure(
    fleet: tuple[list[ServerProcess], Balancer], capsys: pytest.CaptureFixture[str]
) -> None:
    replicas, balancer = fleet
    templates = _templates()
    with httpx.Client(base_url=balancer.url, timeout=60) as client:  # the single-request answers
        expected = [extract(p, b, client.post(p, json=b).raise_for_status().json()) for p, b in templates]
    stats: dict[str, Any] = {"answers": 0, "status": {}, "mismatch": [], "errors": []}

    async def worker(seed: int, client: Any, stop: float) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop:
            k = rng.randrange(len(templates))
            path, body = templates[k]
            try:
                response = await client.post(path, json=body)
            except httpx.HTTPError as exc:
                stats["errors"].append(repr(exc))
                continue
            stats["answers"] += 1
            stats["status"][response.status_code] = stats["status"].get(response.status_code, 0) + 1
            if response.status_code == 200 and not same(extract(path, body, response.json()), expected[k]):
                stats["mismatch"].append((path, k))

    async def chaos(started: float) -> None:
        await asyncio.sleep(LOAD_SECONDS / 3)
        os.kill(replicas[0].pid(), signal.SIGKILL)  # a crash: in-flight requests lose their replica
        await asyncio.sleep(LOAD_SECONDS / 3)
        replicas[1].terminate()  # a rolling update: drain, then exit

    async def main() -> None:
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        async with httpx.AsyncClient(base_url=balancer.url, timeout=60, limits=limits) as client:
            started = time.monotonic()
            stop = started + LOAD_SECONDS
            await asyncio.gather(chaos(started), *(worker(i, client, stop) for i in range(16)))

    asyncio.run(main())
    with capsys.disabled():
        print(f"\nfailover, 3 replicas behind HAProxy, 16 clients, {LOAD_SECONDS:.0f} s: {stats['answers']} answers, "
              f"statuses {stats['status']}, transport errors {len(stats['errors'])}")
    assert not stats["errors"], stats["errors"][:5]
    assert set(stats["status"]) == {200}, stats["status"]
    assert not stats["mismatch"], stats["mismatch"][:10]
    assert stats["answers"] >= 50
    assert replicas[0].wait(5) == -signal.SIGKILL
    assert replicas[1].wait(40) == 0  # drained and stopped gracefully
    assert replicas[2].process is not None and replicas[2].process.poll() is None
