"""Prometheus metrics of one app: its own registry, so several apps can live in one process."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from crossrank.extras import require

if TYPE_CHECKING:
    from crossrank.server.state import ServedModels

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Counters and histograms the server updates; rendered at ``GET /metrics``."""

    def __init__(self) -> None:
        prom = require("prometheus_client", "server", "The /metrics endpoint")
        self._prom = prom
        prom.disable_created_metrics()
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter("crossrank_requests", "HTTP requests by route and status",
                                     ["route", "status"], registry=r)
        self.errors = prom.Counter("crossrank_errors", "error answers by error type", ["type"], registry=r)
        self.latency = prom.Histogram("crossrank_request_seconds", "request latency by route", ["route"],
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.batch_rows = prom.Histogram("crossrank_batch_rows", "rows per model call", ["model"],
                                         buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = prom.Histogram("crossrank_batch_seconds", "seconds per model call", ["model"],
                                            buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = prom.Counter("crossrank_batch_tokens", "tokens sent to the model, padding included",
                                   ["model"], registry=r)
        self.pairs = prom.Counter("crossrank_pairs", "pairs or texts scored", ["model"], registry=r)
        self.truncated = prom.Counter("crossrank_truncated_pairs", "pairs whose document was cut to fit",
                                      ["model"], registry=r)
        self.queue = prom.Gauge("crossrank_queue_depth", "pairs or texts admitted and not finished",
                                ["model"], registry=r)

    def bind(self, models: ServedModels) -> None:
        """Report queue depths live from the schedulers."""
        for name, cross in models.cross.items():
            self.queue.labels(name).set_function(lambda s=cross.scheduler: s.depth)
        for name, bi in models.bi.items():
            self.queue.labels(name).set_function(lambda s=bi.scheduler: s.depth)

    def observer(self, model: str) -> Callable[[int, int, float], None]:
        rows_h = self.batch_rows.labels(model)
        secs_h = self.batch_seconds.labels(model)
        tokens_c = self.tokens.labels(model)

        def observe(rows: int, tokens: int, seconds: float) -> None:
            rows_h.observe(rows)
            secs_h.observe(seconds)
            tokens_c.inc(tokens)

        return observe

    def scored(self, model: str, count: int, truncated: int = 0) -> None:
        self.pairs.labels(model).inc(count)
        if truncated:
            self.truncated.labels(model).inc(truncated)

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST
