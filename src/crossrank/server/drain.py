"""Graceful drain for replicas behind a load balancer.

At SIGTERM the readiness routes (``/health``, ``/.well-known/ready``) answer 503 at once, while
the server goes on serving every request, for ``--drain-seconds``; only then does uvicorn's
graceful shutdown begin (stop listening, finish in-flight requests within ``--graceful-timeout``).
A balancer that checks readiness every second or so takes the replica out of rotation during the
drain, before its socket closes, so no client is sent to a closing process. A second SIGTERM, or
Ctrl-C, stops at once (still gracefully).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import uvicorn

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """``uvicorn.Server`` whose first SIGTERM turns readiness off and waits ``drain_s`` before exiting."""

    def __init__(self, config: uvicorn.Config, app: Any, drain_s: float) -> None:
        super().__init__(config)
        self.app_state = app.state
        self.drain_s = max(0.0, float(drain_s))
        self.draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.app_state.ready = False  # readiness fails from this moment on, whatever follows
        if sig == signal.SIGTERM and self.drain_s > 0 and not self.draining:
            self.draining = True
            log.warning("SIGTERM: not ready; serving for %.1f s more, then stopping", self.drain_s)
            timer = threading.Timer(self.drain_s, super().handle_exit, (sig, frame))
            timer.daemon = True
            timer.start()
            return
        super().handle_exit(sig, frame)
