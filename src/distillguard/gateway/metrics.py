"""Prometheus metrics of the gateway: calls, decisions by action, latency, upstream errors.

With several worker processes, `PROMETHEUS_MULTIPROC_DIR` is set by `distillguard serve` and every
worker's /metrics reports the sum over all workers (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

CALLS = Counter("distillguard_calls_total", "Calls that reached the gateway", ["endpoint", "status"])
DECISIONS = Counter("distillguard_decisions_total", "Policy decisions by action", ["action", "enforced"])
UPSTREAM_ERRORS = Counter("distillguard_upstream_errors_total", "Failed upstream calls by kind", ["kind"])
LATENCY = Histogram(
    "distillguard_call_seconds",
    "Time from request arrival to the last byte sent",
    ["endpoint"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
OVERHEAD = Histogram(
    "distillguard_decision_seconds",
    "Time spent deciding on the request path (signals, policy, state)",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)


class GatewayMetrics:
    """The pipeline's stages report here (`pipeline.CallMetrics`)."""

    def __init__(self) -> None:
        self._calls: dict[tuple[str, int], Any] = {}  # label lookups cached: the request path is hot

    def decision_time(self, seconds: float) -> None:
        OVERHEAD.observe(seconds)

    def call(self, endpoint: str, status: int, decision: Any, seconds: float) -> None:
        counter = self._calls.get((endpoint, status))
        if counter is None:
            counter = self._calls[(endpoint, status)] = CALLS.labels(endpoint, str(status))
        counter.inc()
        DECISIONS.labels(decision.action, str(decision.enforced).lower()).inc()
        LATENCY.labels(endpoint).observe(seconds)


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
