"""OpenTelemetry traces: one TracerProvider per process, gRPC spans, the run's ids as baggage.

With ``--tracing`` (on by default) every loomflow server method and every
grpc.aio channel a service opens is instrumented by ``opentelemetry-instrumentation-grpc``,
so one agent run is one trace: the Agent's server span, its client spans, and
the Memory, Budget, Policy and Audit server spans beneath them, in one process
or across many (W3C ``traceparent`` metadata). The run's ids travel as W3C
baggage (``loomflow.user_id``, ``loomflow.session_id``, ``loomflow.run_id``);
the kernel interceptor puts them on each server span as attributes and on each
log line as fields.

Spans leave the process only when ``--otlp-endpoint`` is set (OTLP/gRPC; off by
default). Without it nothing is recorded (the sampler drops every span, which
is much cheaper than recording spans nobody reads), but trace context still
propagates, so every log line still has a ``trace_id`` that is the same in
every service a run touched.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, MutableMapping, Sequence
from contextvars import Token
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, SamplingResult
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
_otlp_endpoints: set[str] = set()
_captures: list[SpanExporter] = []


class _RecordWhenExported(Sampler):
    """Parent-based sampling while spans have somewhere to go; otherwise drop them all.

    A dropped span still carries a valid trace id, so propagation and the
    ``trace_id`` of log lines work either way.
    """

    def __init__(self) -> None:
        self._sampled = ParentBased(root=ALWAYS_ON)

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
        chosen = self._sampled if (_otlp_endpoints or _captures) else ALWAYS_OFF
        return chosen.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return "RecordWhenExported(ParentBased(AlwaysOn))"


class _CaptureProcessor(SpanProcessor):
    """Hands finished spans to the exporters :func:`capture_spans` registered (tests)."""

    def on_end(self, span: ReadableSpan) -> None:
        for exporter in tuple(_captures):
            exporter.export((span,))


def setup_tracing(service_name: str, otlp_endpoint: str = "") -> None:
    """Installs the process's TracerProvider (once) and instruments gRPC servers and clients.

    Must run before ``grpc.aio.server()`` is called and before a service opens its
    channels: the instrumentation wraps those factories. ``otlp_endpoint`` is an
    OTLP/gRPC collector (``http://host:4317`` for plaintext, ``https://`` for TLS).
    """
    provider = _install_provider(service_name)
    with _lock:
        if otlp_endpoint and otlp_endpoint not in _otlp_endpoints:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
            _otlp_endpoints.add(otlp_endpoint)
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
                    resource=Resource.create({"service.name": service_name}), sampler=_RecordWhenExported()
                )
                trace.set_tracer_provider(_provider)
            _provider.add_span_processor(_CaptureProcessor())
        return _provider


def instrument_grpc() -> None:
    """Wraps the grpc.aio channel factories, so every channel opened later is traced (idempotent).

    Only ``loomflow.*`` services are traced: health probes and reflection would
    be noise, and the OTLP exporter's own (sync) channel is never traced.
    Servers are traced by :func:`traced_handler`, method by method.
    """
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, filters

    client = GrpcAioInstrumentorClient(filter_=filters.service_prefix("loomflow."))  # type: ignore[no-untyped-call]
    if not client.is_instrumented_by_opentelemetry:
        client.instrument()


def uninstrument_grpc() -> None:
    """Restores the plain grpc.aio channel factories (channels made later are not traced)."""
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient

    client = GrpcAioInstrumentorClient()  # type: ignore[no-untyped-call]
    if client.is_instrumented_by_opentelemetry:
        client.uninstrument()


@dataclass(frozen=True)
class _Method:
    """What the instrumentation reads of a call's ``HandlerCallDetails``: the method path."""

    method: str
    invocation_metadata: tuple[tuple[str, str], ...] = ()


def _recording() -> bool:
    """Whether server spans are recorded: only while they have somewhere to go (see the sampler)."""
    return bool(_otlp_endpoints or _captures)


def traced_handler(service: str, rpc: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` inside a SERVER span, wrapped once.

    While spans are recorded, the span is opentelemetry-instrumentation-grpc's
    (attributes, status code, exceptions). The library's aio server interceptor
    builds that wrapper on every call, through grpc.aio's interceptor machinery
    (measured: about a sixth of an agent turn's throughput); the kernel wraps its
    handlers at registration instead (see interceptor.py), so the span logic is
    applied there too.

    While nothing records (no ``--otlp-endpoint``: the sampler drops every span),
    a lean path does only what stays observable: it extracts the caller's trace
    context and baggage from the metadata and makes the non-recording span
    current, so log lines carry the caller's ``trace_id`` and downstream calls
    propagate it. The library's span attributes (peer address parsing, metadata
    copies, a proxy around the servicer context) are dropped unread in that case;
    skipping them took the budget benchmark with tracing on from 2,597 to
    2,714–2,760 Reserve+Commit pairs/s (floor 3,114 → 3,308–3,515).
    """
    from opentelemetry.instrumentation.grpc import aio_server_interceptor
    from opentelemetry.instrumentation.grpc._server import _wrap_rpc_behavior

    interceptor = aio_server_interceptor()  # type: ignore[no-untyped-call]
    details = _Method(f"/{service}/{rpc}")
    name = details.method
    tracer = trace.get_tracer(__name__)

    def enter(call: Any) -> tuple[Token[context.Context], trace.Span]:
        """The caller's context attached, and the (non-recording) server span to make current."""
        carrier = {key: value for key, value in call.invocation_metadata() or () if isinstance(value, str)}
        token = context.attach(propagate.extract(carrier))
        return token, tracer.start_span(name, kind=SpanKind.SERVER)

    def telemetry(behavior: Any, request_streaming: bool, response_streaming: bool) -> Any:
        if response_streaming:
            recorded_stream = interceptor._intercept_aio_server_stream(behavior, details)

            async def stream(request: Any, call: Any) -> Any:
                if _recording():
                    async for item in recorded_stream(request, call):
                        yield item
                    return
                token, span = enter(call)
                try:
                    with trace.use_span(span, end_on_exit=True):
                        async for item in behavior(request, call):
                            yield item
                finally:
                    context.detach(token)

            return stream

        recorded_unary = interceptor._intercept_aio_server_unary(behavior, details)

        async def unary(request: Any, call: Any) -> Any:
            if _recording():
                return await recorded_unary(request, call)
            token, span = enter(call)
            try:
                with trace.use_span(span, end_on_exit=True):
                    return await behavior(request, call)
            finally:
                context.detach(token)

        return unary

    wrapped: grpc.RpcMethodHandler[Any, Any] = _wrap_rpc_behavior(handler, telemetry)  # type: ignore[no-untyped-call]
    return wrapped


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
