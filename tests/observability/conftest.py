"""What the tracing tests share: spans captured in memory, and a suite with its spans and logs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from loomflow.kernel import tracing
from loomflow.testing.suite import RunningSuite
from tests.observability.logcapture import CapturedLogs


@dataclass
class Traced:
    suite: RunningSuite
    spans: InMemorySpanExporter
    logs: CapturedLogs


@pytest.fixture
def span_capture() -> Iterator[InMemorySpanExporter]:
    """Spans in memory; the gRPC instrumentation is process-global, so it is removed again after."""
    with tracing.capture_spans() as exporter:
        try:
            yield exporter
        finally:
            tracing.uninstrument_grpc()
