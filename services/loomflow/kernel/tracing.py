"""OpenTelemetry traces: one TracerProvider per process, gRPC spans, the run's ids as baggage.

With ``--tracing`` (on by default) every loomflow server method and every
grpc.aio channel a service opens is instrumented by ``opentelemetry-instrumentation-grpc``,
so one call at the edge is one trace: the edge service's server span, its client
spans, and the server spans of the services it called beneath them, in one process
or across many (W3C ``traceparent`` metadata). The run's ids travel as W3C
baggage (``loomflow.user_id``, ``loomflow.session_id``, ``loomflow.run_id``);
the kernel interceptor puts them on each server span as attributes and on each
log line as fields.

Configuration is OpenTelemetry's own: ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` name the resource (default service name
``loomflow-<service>``), ``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG`` pick the
sampler (the SDK's default: parent-based always-on), and
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``, with the exporter's
other ``OTEL_EXPORTER_OTLP_*`` variables) exports over OTLP/gRPC; ``--otlp-endpoint``
is a shorthand for the endpoint. With no exporter configured spans are dropped
(recording spans nobody reads costs CPU), but trace context still propagates, so
every log line still has a ``trace_id`` that is the same in every service a run
touched.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

import grpc
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from loomflow.kernel.telemetry import log_context
from loomflow.kernel.tenancy import display_tenant

USER_ID = "loomflow.user_id"
SESSION_ID = "loomflow.session_id"
RUN_ID = "loomflow.run_id"
"""Span attribute and baggage keys of the run's ids."""

_IDS = (("user_id", USER_ID), ("session_id", SESSION_ID), ("run_id", RUN_ID))

_lock = threading.Lock()
_provider: TracerProvider | None = None
_exporting = False
_captures: list[SpanExporter] = []


class _DropWhenNothingExports(Sampler):
    """The sampler ``OTEL_TRACES_SAMPLER`` configures, while spans have somewhere to go; otherwise none.

    A dropped span still carries a valid trace id, so propagation and the
    ``trace_id`` of log lines work either way.
    """

    def __init__(self, configured: Sampler) -> None:
        self.configured = configured

    def should_sample(
        self,
        parent_context: context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        chosen = self.configured if (_exporting or _captures) else ALWAYS_OFF
        return chosen.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"DropWhenNothingExports({self.configured.get_description()})"


def configured_sampler() -> Sampler:
    """The sampler the SDK builds from ``OTEL_TRACES_SAMPLER``/``_ARG`` (read through its public API)."""
    return TracerProvider(shutdown_on_exit=False).sampler


def exporter_configured(otlp_endpoint: str = "") -> bool:
    """Whether spans are exported: ``--otlp-endpoint`` or the standard OTLP endpoint variables."""
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        otlp_endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def resource(default_service_name: str) -> Resource:
    """``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` as the SDK reads them; the default name
    only when neither names the service."""
    detected = Resource.create({})
    if str(detected.attributes.get("service.name", "")).startswith("unknown_service"):
        return detected.merge(Resource({"service.name": default_service_name}))
    return detected


class _CaptureProcessor(SpanProcessor):
    """Hands finished spans to the exporters :func:`capture_spans` registered (tests)."""

    def on_end(self, span: ReadableSpan) -> None:
        for exporter in tuple(_captures):
            exporter.export((span,))


def setup_tracing(service_name: str, otlp_endpoint: str = "") -> None:
    """Installs the process's TracerProvider (once) and instruments gRPC clients.

    Must run before a service opens its channels: the instrumentation wraps the
    channel factories. ``service_name`` is the default ``service.name``;
    ``otlp_endpoint`` (``http://host:4317`` plaintext, ``https://`` TLS) overrides
    ``OTEL_EXPORTER_OTLP_ENDPOINT``.
    """
    global _exporting
    provider = _install_provider(service_name)
    with _lock:
        if exporter_configured(otlp_endpoint) and not _exporting:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            # No endpoint argument: the exporter reads OTEL_EXPORTER_OTLP_* (headers, TLS, timeout) itself.
            exporter = OTLPSpanExporter(endpoint=otlp_endpoint) if otlp_endpoint else OTLPSpanExporter()
            provider.add_span_processor(BatchSpanProcessor(exporter))
            _exporting = True
    instrument_grpc()


def _install_provider(service_name: str) -> TracerProvider:
    global _provider
    with _lock:
        if _provider is None:
            current = trace.get_tracer_provider()
            if isinstance(current, TracerProvider):
                _provider = current  # someone (an embedding app) installed an SDK provider: add to it
            else:
                _provider = TracerProvider(
                    resource=resource(service_name), sampler=_DropWhenNothingExports(configured_sampler())
                )
                trace.set_tracer_provider(_provider)
            _provider.add_span_processor(_CaptureProcessor())
        return _provider


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The instrumentation library's grpc.aio server interceptor, for ``loomflow.*`` services only
    (health probes and reflection would be noise)."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(filter_=traced_services())]  # type: ignore[no-untyped-call]


def traced_services() -> Any:
    """``loomflow.*`` services but the multiplexed stream (a stream-stream RPC the instrumentation cannot
    wrap, whose carried calls get a span each: kernel/transport/mux_server.py)."""
    from opentelemetry.instrumentation.grpc import filters

    mux = filters.service_name("loomflow.v1.MuxService")
    return filters.all_of(filters.service_prefix("loomflow."), filters.negate(mux))


def instrument_grpc() -> None:
    """Wraps the grpc.aio channel factories, so every channel opened later is traced (idempotent).

    Only ``loomflow.*`` services are traced: health probes and reflection would
    be noise, and the OTLP exporter's own (sync) channel is never traced.
    Servers are traced by :func:`server_interceptors`.
    """
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient

    client = GrpcAioInstrumentorClient(filter_=traced_services())  # type: ignore[no-untyped-call]
    if not client.is_instrumented_by_opentelemetry:
        client.instrument()


def uninstrument_grpc() -> None:
    """Restores the plain grpc.aio channel factories (channels made later are not traced)."""
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient

    client = GrpcAioInstrumentorClient()  # type: ignore[no-untyped-call]
    if client.is_instrumented_by_opentelemetry:
        client.uninstrument()


def flush_spans(timeout_millis: int = 5000) -> None:
    """Exports what the batch processors still hold (the server calls this when it stops)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


@contextlib.contextmanager
def capture_spans(service_name: str = "loomflow") -> Iterator[InMemorySpanExporter]:
    """Test hook: every span that ends inside the block is also kept in memory."""
    _install_provider(service_name)
    exporter = InMemorySpanExporter()
    _captures.append(exporter)
    try:
        yield exporter
    finally:
        _captures.remove(exporter)


# -- the run's ids ---------------------------------------------------------


def bind_run(tenant_key: str, session_id: str = "", run_id: str = "") -> None:
    """Marks the rest of the current RPC as one run of ``tenant_key``.

    Sets the ids as attributes of the current span, adds them to this RPC's log
    line, and attaches them as baggage so every downstream call carries them.
    Call it from an RPC handler: grpc.aio runs each RPC in its own task, so the
    binding ends with the RPC. Elsewhere use :func:`run_scope`.
    """
    context.attach(_bind(tenant_key, session_id, run_id))


@contextlib.contextmanager
def run_scope(tenant_key: str, session_id: str = "", run_id: str = "") -> Iterator[None]:
    """:func:`bind_run` for the duration of a block."""
    token = context.attach(_bind(tenant_key, session_id, run_id))
    try:
        yield
    finally:
        context.detach(token)


def _bind(tenant_key: str, session_id: str, run_id: str) -> context.Context:
    ids = {"user_id": display_tenant(tenant_key), "session_id": session_id, "run_id": run_id}
    present = {name: value for name, value in ids.items() if value}
    fields = log_context.get(None)
    if fields is None:
        log_context.set(dict(present))
    else:
        fields.update(present)  # the dict of this RPC's log line (see the interceptor)
    span = trace.get_current_span()
    ctx = context.get_current()
    for name, key in _IDS:
        if name in present:
            span.set_attribute(key, present[name])
            ctx = baggage.set_baggage(key, present[name], ctx)
        else:  # never let an earlier run's id ride along
            ctx = baggage.remove_baggage(key, ctx)
    return ctx


def adopt_run_ids(fields: MutableMapping[str, str]) -> None:
    """Fills ``session_id`` and ``run_id`` from the baggage an internal caller sent.

    ``fields`` already holds the request's ``user_id`` (display form); baggage
    naming another tenant is ignored, and ids the request itself carries win.
    The interceptor calls this for service and operator principals only: an end
    user's baggage is not trusted.
    """
    carried = baggage.get_all()
    if not carried or carried.get(USER_ID) != fields.get("user_id"):
        return
    for name, key in _IDS[1:]:
        value = carried.get(key)
        if value and name not in fields:
            fields[name] = str(value)


def annotate_span(span: trace.Span, fields: MutableMapping[str, str]) -> None:
    """Puts the run's ids on a server span as ``loomflow.*`` attributes."""
    for name, key in _IDS:
        value = fields.get(name)
        if value:
            span.set_attribute(key, value)
