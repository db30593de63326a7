"""Structured logs, Prometheus metrics tagged with user_id, and OpenTelemetry tracing.

Metrics are loomflow's own light instruments (instruments.py), exported for
Prometheus; tracing is OpenTelemetry.

Every metric carries a ``user_id`` attribute through :class:`TenantLabels`, a
cardinality guard: the first N tenants seen keep their own label, the rest are
reported as ``__other__``, so 100k tenants cannot blow up a Prometheus server.
The anonymous partition is labelled ``anonymous``, never with the sentinel.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import threading
import time
from typing import Any

from opentelemetry import trace

from loomflow.kernel.instruments import INSTRUMENTS, Meter
from loomflow.kernel.loglimits import BoundedFormatter, RepeatThrottle
from loomflow.kernel.tenancy import display_tenant

OTHER_TENANTS = "__other__"

LATENCY_BUCKETS_S = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip
"""Histogram bucket bounds for every loomflow latency, in seconds (the base unit).

Explicit because the OpenTelemetry defaults start at 5 ms, and most loomflow
RPCs finish well under one millisecond. Histograms carry no ``user_id``: a
tenant label on ~17 series per histogram is what made metrics heavy; per-tenant
counts stay on counters.
"""

log_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("loomflow_log_context")
"""Fields (user_id, session_id, run_id, rpc, trace_id) every log line of the current RPC carries."""


class TenantLabels:
    """Cardinality guard: at most ``max_tenants`` distinct user_id label values."""

    def __init__(self, max_tenants: int) -> None:
        self._max = max_tenants
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def label(self, tenant_key: str) -> str:
        shown = display_tenant(tenant_key)
        if shown in self._seen:
            return shown
        with self._lock:
            if len(self._seen) < self._max:
                self._seen.add(shown)
                return shown
        return OTHER_TENANTS


_tenant_labels = TenantLabels(1000)


def configure_tenant_labels(max_tenants: int) -> None:
    """Sets the process-wide cardinality guard (the server does this from its settings)."""
    global _tenant_labels
    _tenant_labels = TenantLabels(max_tenants)


def tenant_label(tenant_key: str) -> str:
    """The ``user_id`` attribute value for a metric: guarded, and ``anonymous`` for the sentinel.

    Every metric of every service labels its tenant through this function.
    """
    return _tenant_labels.label(tenant_key)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the RPC's context, extras."""

    _reserved = set(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(log_context.get({}))
        for key, value in vars(record).items():
            if key not in self._reserved and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(
    level: str = "info", fmt: str = "json", max_line_chars: int = 16_384, repeats_per_minute: int = 20
) -> None:
    """Logs to stderr, one line per record, at most ``max_line_chars`` long; an error with the
    same logger and template is written at most ``repeats_per_minute`` times a minute (0: no limit)."""
    handler = logging.StreamHandler(sys.stderr)
    inner = JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(BoundedFormatter(inner, max_line_chars) if max_line_chars > 0 else inner)
    handler.addFilter(RepeatThrottle(repeats_per_minute, 60.0))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


_metrics_lock = threading.Lock()
_metrics_served = False
_meter = Meter(INSTRUMENTS)


def setup_metrics(service_name: str, port: int, host: str = "0.0.0.0", services: str = "") -> None:
    """Names the process in ``target_info`` and serves the Prometheus endpoint on ``port`` (0: not served).

    Instruments record from the start; this only decides where they are scraped."""
    global _metrics_served
    with _metrics_lock:
        if _metrics_served:
            return
        INSTRUMENTS.target_info = {"service_name": service_name, **({"services": services} if services else {})}
        if port:
            from prometheus_client import start_http_server

            start_http_server(port, addr=host)  # OSError when the port is taken: the caller names the setting
        _metrics_served = True


def meter(name: str) -> Meter:
    """Instruments for one component (``name``, e.g. ``loomflow.<service>``, documents the owner)."""
    return _meter


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)
