"""Run ``crossrank serve`` as a child process on a free loopback port (tests, benchmarks)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from crossrank.errors import CrossrankError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _command() -> list[str]:
    script = Path(sys.executable).with_name("crossrank")
    if script.is_file():
        return [str(script)]
    found = shutil.which("crossrank")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from crossrank.cli import main; sys.exit(main())"]


def wait_until_answers(process: subprocess.Popen[bytes], url: str, status: int, timeout: float, *,
                       what: str, log: Path | None = None, poll_s: float = 0.2) -> bool:
    """Poll ``url`` until it answers ``status`` (True) or ``timeout`` passes (False); a
    :class:`CrossrankError` if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CrossrankError(f"{what} exited with code {process.returncode} during start-up"
                                 + (f"; see {log}" if log else ""))
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == status:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(poll_s)
    return False


class ServerProcess:
    """``crossrank serve ARGS`` on 127.0.0.1 and a free port, ready when entered.

    >>> with ServerProcess(["--model", "/path/to/model"]) as server:  # doctest: +SKIP
    ...     print(server.url)
    """

    def __init__(self, args: Sequence[str], *, env: Mapping[str, str] | None = None,
                 startup_timeout: float = 180.0, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [*_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port), *args]
        self.env = {**os.environ, **(env or {})}
        self.startup_timeout = startup_timeout
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if not wait_until_answers(self.process, f"{self.url}/health", 200, self.startup_timeout,
                                  what="crossrank serve", log=self.log_path):
            self.stop()
            raise CrossrankError(f"crossrank serve did not become ready within {self.startup_timeout:.0f} s")
        return self

    def terminate(self) -> None:
        """Send SIGTERM (graceful shutdown: in-flight requests finish)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> int | None:
        if self.process is None:
            return None
        self.terminate()
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
