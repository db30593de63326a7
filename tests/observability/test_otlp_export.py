"""Spans leave a real `loomflow serve` over OTLP/gRPC when --otlp-endpoint is set.

The collector is a real gRPC server speaking the OTLP TraceService, on loopback.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from loomflow.testing.processes import ServeProcess, free_port
from loomflow.v1 import memory_pb2, memory_pb2_grpc, tenancy_pb2


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.received = threading.Event()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        self.received.set()
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[tuple[str, trace_pb2.Span]]:
        """(service.name of the resource, span) for every span received."""
        found: list[tuple[str, trace_pb2.Span]] = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    found.extend((attrs.get("service.name", ""), span) for span in scope_spans.spans)
        return found


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    servicer = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, port
    finally:
        server.stop(0)


def test_spans_are_exported_to_the_configured_otlp_collector(tmp_path: Path, collector: tuple[Collector, int]) -> None:
    servicer, port = collector
    serve = ServeProcess(
        services="memory",
        data_dir=tmp_path,
        env={
            "LOOMFLOW_INSECURE": "true",
            "LOOMFLOW_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "LOOMFLOW_METRICS_PORT": str(free_port()),
        },
    )
    with serve, grpc.insecure_channel(serve.address) as channel:
        stub = memory_pb2_grpc.MemoryServiceStub(channel)
        scope = tenancy_pb2.UserScope(user_id="otlp-tenant")
        stub.Remember(memory_pb2.RememberRequest(scope=scope, session_id="s-otlp", run_id="r-otlp", input="x"))
    # Leaving the block sent SIGTERM: the server flushes its batch before it exits.
    assert servicer.received.wait(10), "the collector received no spans"
    spans = servicer.spans()
    remember = [(name, s) for name, s in spans if s.name == "/loomflow.v1.MemoryService/Remember"]
    assert len(remember) == 1, [s.name for _, s in spans]
    service_name, span = remember[0]
    assert service_name == "loomflow-memory"
    attrs = {a.key: a.value.string_value for a in span.attributes}
    assert attrs["loomflow.user_id"] == "otlp-tenant"
    assert attrs["loomflow.session_id"] == "s-otlp"
    assert attrs["loomflow.run_id"] == "r-otlp"
    assert span.kind == trace_pb2.Span.SPAN_KIND_SERVER


def _remember_once(serve: ServeProcess) -> None:
    with serve, grpc.insecure_channel(serve.address) as channel:
        scope = tenancy_pb2.UserScope(user_id="otel-tenant")
        memory_pb2_grpc.MemoryServiceStub(channel).Remember(memory_pb2.RememberRequest(scope=scope, input="x"))


def test_standard_otel_variables_alone_export_spans_with_their_resource(
    tmp_path: Path, collector: tuple[Collector, int]
) -> None:
    """No LOOMFLOW_OTLP_ENDPOINT: only what any OpenTelemetry deployment sets (an Operator, a Helm chart)."""
    servicer, port = collector
    env = {
        "LOOMFLOW_INSECURE": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_SERVICE_NAME": "memory-eu-1",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=staging,k8s.pod.name=memory-7d9f",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "1.0",
    }
    _remember_once(ServeProcess("memory", tmp_path, env=env))
    assert servicer.received.wait(10), "OTEL_EXPORTER_OTLP_ENDPOINT alone exported no spans"
    resources = [
        {a.key: a.value.string_value for a in rs.resource.attributes}
        for request in servicer.requests
        for rs in request.resource_spans
    ]
    assert resources, "no resource spans"
    for attributes in resources:
        assert attributes["service.name"] == "memory-eu-1", attributes
        assert attributes["deployment.environment"] == "staging", attributes
        assert attributes["k8s.pod.name"] == "memory-7d9f", attributes
    assert any(s.name == "/loomflow.v1.MemoryService/Remember" for _, s in servicer.spans())


def test_otel_traces_sampler_is_honoured(tmp_path: Path, collector: tuple[Collector, int]) -> None:
    servicer, port = collector
    env = {
        "LOOMFLOW_INSECURE": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_TRACES_SAMPLER": "traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0",
    }
    _remember_once(ServeProcess("memory", tmp_path, env=env))  # its exit flushed whatever was sampled
    assert servicer.spans() == [], "OTEL_TRACES_SAMPLER_ARG=0 sampled spans anyway"
