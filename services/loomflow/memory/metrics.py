"""Memory's domain metrics, exported on the Prometheus endpoint (docs/observability.md).

Prometheus names: ``loomflow_memory_episodes_stored_total``,
``loomflow_memory_recall_duration_seconds`` (a histogram) and
``loomflow_memory_evicted_users_total{reason}`` (tenants the bounded in-memory
backend dropped: lru, idle). Every point is
labelled ``user_id`` through the kernel's cardinality guard.
"""

from __future__ import annotations

import time

from loomflow.kernel.telemetry import LATENCY_BUCKETS_S, meter, tenant_label

_meter = meter("loomflow.memory")
_episodes_stored = _meter.create_counter(
    "loomflow_memory_episodes_stored", unit="{episode}", description="Episodes remembered"
)
_recall_duration = _meter.create_histogram(
    "loomflow_memory_recall_duration",
    unit="s",
    description="Time to answer a recall (search and ranking)",
    explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
)


def record_episode_stored(tenant_key: str, count: int = 1) -> None:
    _episodes_stored.add(count, {"user_id": tenant_label(tenant_key)})


def record_recall(tenant_key: str, started: float) -> None:
    """``started``: ``time.perf_counter()`` when the recall began."""
    _recall_duration.record(time.perf_counter() - started, {})


_evicted_users = _meter.create_counter(
    "loomflow_memory_evicted_users",
    unit="{user}",
    description="Tenants dropped from the bounded in-memory backend, by reason (lru, idle)",
)


def record_eviction(reason: str, tenant_key: str) -> None:
    """``tenant_key``: the tenant evicted (labelled like every other metric, through the guard)."""
    _evicted_users.add(1, {"user_id": tenant_label(tenant_key), "reason": reason})
