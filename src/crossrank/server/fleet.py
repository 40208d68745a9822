"""Replicas of ``crossrank serve`` behind HAProxy on this machine (the failover test, the fleet
benchmark, and a reference configuration for deployments).

The balancer checks each replica's readiness route (``GET /.well-known/ready``, 204 when loaded
and warm, 503 from the moment a SIGTERM arrives) and retries a request on another replica when a
connection fails, a replica closes without answering, or answers 503 (a drain cut short).
Reranking is idempotent, so a retry is safe.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from crossrank.errors import CrossrankError
from crossrank.server.launch import free_port, wait_until_answers

HAPROXY_TEMPLATE = """\
global
    maxconn 512
    # a request is buffered whole so that it can be sent again to another replica
    tune.bufsize 1048576

defaults
    mode http
    option http-buffer-request
    timeout connect 1s
    timeout client 60s
    timeout server {server_timeout}s
    timeout http-request 10s
    # reranking is idempotent: retry on another replica when one fails before answering
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout 503

frontend crossrank
    bind {bind}:{port}
    default_backend replicas

backend replicas
    balance leastconn
    option httpchk GET /.well-known/ready
    http-check expect status 204
    default-server inter {check_ms}ms fall 1 rise 1 slowstart 0s
{servers}
"""


def haproxy_config(replicas: Sequence[str], port: int, *, bind: str = "127.0.0.1", check_ms: int = 250,
                   server_timeout: float = 35) -> str:
    """An HAProxy configuration over ``replicas`` (``host:port`` each) listening on ``bind:port``."""
    servers = "\n".join(f"    server replica{i} {address} check" for i, address in enumerate(replicas, 1))
    return HAPROXY_TEMPLATE.format(bind=bind, port=port, check_ms=check_ms, servers=servers,
                                   server_timeout=int(server_timeout))


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or next(
        (str(p) for p in (Path("/usr/sbin/haproxy"), Path("/usr/local/sbin/haproxy")) if p.exists()), None)


class Balancer:
    """HAProxy in the foreground over ``replicas``, ready (a replica up) when entered."""

    def __init__(self, replicas: Sequence[str], directory: Path, *, check_ms: int = 250) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise CrossrankError("haproxy is not installed (install Debian's haproxy package; `make test` does)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = Path(directory) / "haproxy.cfg"
        self.config.write_text(haproxy_config(replicas, self.port, check_ms=check_ms), encoding="utf-8")
        self.args = [binary, "-db", "-f", str(self.config)]
        self.log = Path(directory) / "haproxy.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> Balancer:
        subprocess.run([self.args[0], "-c", "-q", "-f", str(self.config)], check=True, capture_output=True)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        if wait_until_answers(self.process, f"{self.url}/.well-known/ready", 204, timeout,
                              what="haproxy", log=self.log, poll_s=0.1):
            return self
        self.stop()
        raise CrossrankError(f"haproxy did not route to a ready replica within {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def __enter__(self) -> Balancer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
