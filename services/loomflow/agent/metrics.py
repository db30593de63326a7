"""The Agent's domain metrics, exported on the Prometheus endpoint (docs/observability.md).

Prometheus names: ``loomflow_agent_runs_total{outcome}`` (completed,
interrupted, failed), ``loomflow_agent_turns_total``,
``loomflow_agent_tool_calls_total{outcome}`` (executed, denied, failed) and
``loomflow_agent_model_duration_seconds{model}`` (a histogram of model
calls). Every point is labelled ``user_id`` through the kernel's cardinality
guard.

:func:`record_model_call` also records the call as a span (``chat <model>``, a
child of the run's span), so a trace shows the model's time beside the calls
to the other services.
"""

from __future__ import annotations

import time

from opentelemetry import trace

from loomflow.kernel.telemetry import LATENCY_BUCKETS_S, TenantLabels, meter, tenant_label
from loomflow.kernel.tenancy import display_tenant
from loomflow.kernel.tracing import USER_ID

_meter = meter("loomflow.agent")
_tracer = trace.get_tracer("loomflow.agent")
# The model label has its own guard: with `--agent-models '*'` callers pick provider model names.
_model_labels = TenantLabels(64)
_runs = _meter.create_counter("loomflow_agent_runs", unit="{run}", description="Agent runs, by outcome")
_turns = _meter.create_counter("loomflow_agent_turns", unit="{turn}", description="Model turns taken")
_tool_calls = _meter.create_counter(
    "loomflow_agent_tool_calls", unit="{call}", description="Tool calls the model asked for, by outcome"
)
_model_duration = _meter.create_histogram(
    "loomflow_agent_model_duration",
    unit="s",
    description="Latency of one model call",
    explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
)


def record_run(tenant_key: str, outcome: str) -> None:
    """``outcome``: ``completed``, ``interrupted`` or ``failed``."""
    _runs.add(1, {"user_id": tenant_label(tenant_key), "outcome": outcome})


def record_turn(tenant_key: str) -> None:
    _turns.add(1, {"user_id": tenant_label(tenant_key)})


def record_tool_call(tenant_key: str, outcome: str) -> None:
    """``outcome``: ``executed``, ``denied`` or ``failed``."""
    _tool_calls.add(1, {"user_id": tenant_label(tenant_key), "outcome": outcome})


def record_model_call(tenant_key: str, model: str, started: float) -> None:
    """``model``: a configured model name (a fixed set); ``started``: ``time.perf_counter()`` before the call."""
    elapsed_ns = int((time.perf_counter() - started) * 1e9)
    _model_duration.record(elapsed_ns / 1e9, {"model": _model_labels.label(model)})
    if trace.get_current_span().is_recording():
        ended = time.time_ns()
        span = _tracer.start_span(
            f"chat {model}",
            kind=trace.SpanKind.CLIENT,
            start_time=ended - elapsed_ns,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": model,
                USER_ID: display_tenant(tenant_key),
            },
        )
        span.end(end_time=ended)
