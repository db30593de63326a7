"""Traces through real gRPC: server spans carry the run's ids, baggage carries them downstream.

Spans are captured in memory (the SDK's InMemorySpanExporter, via
``tracing.capture_spans``); the gRPC instrumentation is process-global, so the
fixture removes it again for the tests that follow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from loomflow.kernel import tracing
from loomflow.kernel.tenancy import ANONYMOUS_SENTINEL
from loomflow.testing.suite import running_suite
from loomflow.v1 import memory_pb2, memory_pb2_grpc, tenancy_pb2
from tests.observability.conftest import Traced
from tests.observability.logcapture import captured_logs

MEMORY = "loomflow.v1.MemoryService"


@pytest.fixture
async def traced(tmp_path: Path, span_capture: InMemorySpanExporter) -> AsyncIterator[Traced]:
    with captured_logs() as logs:
        async with running_suite(tmp_path, overrides={"": {"tracing": True}}) as suite:
            yield Traced(suite, span_capture, logs)


def _hex(trace_id: int) -> str:
    return format(trace_id, "032x")


def _server_spans(spans: tuple[ReadableSpan, ...], method: str) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is SpanKind.SERVER and s.name == f"/{method}"]


async def test_server_spans_carry_the_tenant_and_the_ids_the_request_names(traced: Traced) -> None:
    stub = memory_pb2_grpc.MemoryServiceStub(traced.suite.channel)
    scope = tenancy_pb2.UserScope(user_id="alice")
    await stub.Remember(memory_pb2.RememberRequest(scope=scope, session_id="s-1", run_id="r-1", input="hi"))
    (span,) = _server_spans(traced.spans.get_finished_spans(), f"{MEMORY}/Remember")
    assert span.attributes is not None
    assert span.attributes[tracing.USER_ID] == "alice"
    assert span.attributes[tracing.SESSION_ID] == "s-1"
    assert span.attributes[tracing.RUN_ID] == "r-1"


async def test_the_anonymous_partition_is_named_anonymous_on_spans(traced: Traced) -> None:
    stub = memory_pb2_grpc.MemoryServiceStub(traced.suite.channel)
    scope = tenancy_pb2.UserScope(anonymous=tenancy_pb2.Anonymous())
    await stub.Remember(memory_pb2.RememberRequest(scope=scope, input="hi"))
    (span,) = _server_spans(traced.spans.get_finished_spans(), f"{MEMORY}/Remember")
    assert span.attributes is not None
    assert span.attributes[tracing.USER_ID] == "anonymous"
    assert ANONYMOUS_SENTINEL not in str(dict(span.attributes))


async def test_baggage_carries_the_run_ids_to_calls_whose_request_lacks_them(traced: Traced) -> None:
    stub = memory_pb2_grpc.MemoryServiceStub(traced.suite.channel)
    scope = tenancy_pb2.UserScope(user_id="alice")
    with trace.get_tracer("test").start_as_current_span("caller") as caller, tracing.run_scope("alice", "s-9", "r-9"):
        await stub.Recall(memory_pb2.RecallRequest(scope=scope, query="anything"))  # no run_id field
    (span,) = _server_spans(traced.spans.get_finished_spans(), f"{MEMORY}/Recall")
    assert span.attributes is not None
    assert span.attributes[tracing.RUN_ID] == "r-9"
    assert span.attributes[tracing.SESSION_ID] == "s-9"
    trace_id = caller.get_span_context().trace_id
    assert span.context is not None
    assert span.context.trace_id == trace_id, "the server span is in the caller's trace"
    (line,) = [line for line in traced.logs.rpc_lines() if line["rpc"] == f"{MEMORY}/Recall"]
    assert line["run_id"] == "r-9"
    assert line["session_id"] == "s-9"
    assert line["user_id"] == "alice"
    assert line["trace_id"] == _hex(trace_id)


async def test_baggage_naming_another_tenant_is_ignored(traced: Traced) -> None:
    stub = memory_pb2_grpc.MemoryServiceStub(traced.suite.channel)
    with tracing.run_scope("mallory", "s-evil", "r-evil"):
        await stub.Recall(memory_pb2.RecallRequest(scope=tenancy_pb2.UserScope(user_id="alice"), query="x"))
    (span,) = _server_spans(traced.spans.get_finished_spans(), f"{MEMORY}/Recall")
    assert span.attributes is not None
    assert span.attributes[tracing.USER_ID] == "alice"
    assert tracing.RUN_ID not in span.attributes
    (line,) = traced.logs.rpc_lines()
    assert "run_id" not in line


async def test_health_probes_are_not_traced(traced: Traced) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    await health_pb2_grpc.HealthStub(traced.suite.channel).Check(health_pb2.HealthCheckRequest())
    assert not traced.spans.get_finished_spans(), "a health probe made spans"


async def test_a_failed_call_records_its_status_code_on_the_server_span(traced: Traced) -> None:
    stub = memory_pb2_grpc.MemoryServiceStub(traced.suite.channel)
    request = memory_pb2.GetEpisodeRequest(scope=tenancy_pb2.UserScope(user_id="alice"), episode_id="missing")
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.GetEpisode(request)
    assert failed.value.code() is grpc.StatusCode.NOT_FOUND
    # An aborted call's status reaches the client before the server task unwinds through the span.
    for _ in range(200):
        if _server_spans(traced.spans.get_finished_spans(), f"{MEMORY}/GetEpisode"):
            break
        await asyncio.sleep(0.01)
    (span,) = _server_spans(traced.spans.get_finished_spans(), f"{MEMORY}/GetEpisode")
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert span.attributes[tracing.USER_ID] == "alice"


async def test_server_streaming_calls_are_traced_too(traced: Traced) -> None:
    stub = memory_pb2_grpc.MemoryServiceStub(traced.suite.channel)
    request = memory_pb2.MemoryServiceExportRequest(scope=tenancy_pb2.UserScope(user_id="alice"))
    _ = [item async for item in stub.Export(request)]
    (span,) = _server_spans(traced.spans.get_finished_spans(), f"{MEMORY}/Export")
    assert span.attributes is not None
    assert span.attributes[tracing.USER_ID] == "alice"
