"""One agent run is one connected trace across every service, and its logs tell the same story.

All five services run in one process with tracing on, talking over real gRPC
sockets; spans are captured with the SDK's InMemorySpanExporter. A scripted
model makes the run call a tool, so the Policy service is part of the trace.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from loomflow.kernel import tracing
from loomflow.testing.suite import RunningSuite, running_suite
from loomflow.v1 import agent_pb2, agent_pb2_grpc, tenancy_pb2
from tests.observability.conftest import Traced
from tests.observability.logcapture import captured_logs

CANARY = f"CANARY-{uuid.uuid4().hex}"
SCRIPT = [
    {
        "turns": [
            {"text": "let me compute", "tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]},
            {"text": "it is 42"},
        ]
    }
]
DOWNSTREAM = {
    "loomflow.v1.MemoryService",
    "loomflow.v1.BudgetService",
    "loomflow.v1.PolicyService",
    "loomflow.v1.AuditService",
}


def _traced_overrides(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Suite settings: tracing on, and the scripted model that makes a run call a tool."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    return {"": {"tracing": True}, "agent": {"model": "scripted", "script_file": str(script)}}


@pytest.fixture
async def traced(tmp_path: Path, span_capture: InMemorySpanExporter) -> AsyncIterator[Traced]:
    overrides = _traced_overrides(tmp_path)
    with captured_logs() as logs:
        async with running_suite(tmp_path / "data", overrides=overrides) as suite:
            yield Traced(suite, span_capture, logs)


async def _run(suite: RunningSuite, user: str, session: str) -> agent_pb2.RunResponse:
    stub = agent_pb2_grpc.AgentServiceStub(suite.channel)
    options = agent_pb2.RunOptions(prompt=f"compute 6*7, my secret is {CANARY}", session_id=session)
    options.metadata["api_key"] = CANARY
    return await stub.Run(agent_pb2.RunRequest(scope=tenancy_pb2.UserScope(user_id=user), options=options))


def _agent_server_span(spans: tuple[ReadableSpan, ...], run_id: str) -> ReadableSpan:
    (span,) = [
        s
        for s in spans
        if s.kind is SpanKind.SERVER
        and s.name == "/loomflow.v1.AgentService/Run"
        and s.attributes is not None
        and s.attributes.get(tracing.RUN_ID) == run_id
    ]
    return span


def _trace_of(spans: tuple[ReadableSpan, ...], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


def _descends_from(span: ReadableSpan, ancestor: ReadableSpan, by_id: dict[int, ReadableSpan]) -> bool:
    assert ancestor.context is not None
    parent = span.parent
    while parent is not None:
        if parent.span_id == ancestor.context.span_id:
            return True
        above = by_id.get(parent.span_id)
        parent = above.parent if above is not None else None
    return False


async def test_one_run_is_one_trace_spanning_the_agent_and_every_downstream_service(traced: Traced) -> None:
    reply = await _run(traced.suite, "alice", "conv-42")
    assert reply.tool_calls, "the scripted model should have called a tool"
    spans = traced.spans.get_finished_spans()
    agent = _agent_server_span(spans, reply.run_id)
    assert agent.context is not None
    in_trace = _trace_of(spans, agent.context.trace_id)
    assert len(in_trace) == len(spans), "spans of one run landed in more than one trace"
    by_id = {s.context.span_id: s for s in in_trace if s.context is not None}
    downstream = [s for s in in_trace if s.kind is SpanKind.SERVER and s is not agent]
    services = {(s.attributes or {}).get("rpc.service") for s in downstream}
    assert services == DOWNSTREAM, f"services in the trace: {services}"
    for span in downstream:
        assert _descends_from(span, agent, by_id), f"{span.name} is not under the Agent's span"
        attrs = span.attributes or {}
        assert attrs[tracing.USER_ID] == "alice", span.name
        assert attrs[tracing.RUN_ID] == reply.run_id, span.name
        assert attrs[tracing.SESSION_ID] == "conv-42", span.name
    assert (agent.attributes or {})[tracing.SESSION_ID] == "conv-42"
    models = [s for s in in_trace if s.name.startswith("chat ")]
    assert len(models) == reply.turns
    assert all(_descends_from(s, agent, by_id) for s in models)


async def test_concurrent_runs_of_two_tenants_stay_in_their_own_traces(traced: Traced) -> None:
    alice, bob = await asyncio.gather(_run(traced.suite, "alice", "a-1"), _run(traced.suite, "bob", "b-1"))
    spans = traced.spans.get_finished_spans()
    for reply, user in ((alice, "alice"), (bob, "bob")):
        agent = _agent_server_span(spans, reply.run_id)
        assert agent.context is not None
        for span in _trace_of(spans, agent.context.trace_id):
            attrs = span.attributes or {}
            if tracing.USER_ID in attrs:
                assert attrs[tracing.USER_ID] == user, f"{span.name} of {user}'s run names {attrs[tracing.USER_ID]!r}"
            if tracing.RUN_ID in attrs:
                assert attrs[tracing.RUN_ID] == reply.run_id


async def test_every_log_line_of_a_run_carries_its_ids_and_trace_and_no_payload(traced: Traced) -> None:
    reply = await _run(traced.suite, "alice", "conv-7")
    agent = _agent_server_span(traced.spans.get_finished_spans(), reply.run_id)
    assert agent.context is not None
    trace_id = format(agent.context.trace_id, "032x")
    lines = traced.logs.rpc_lines()
    assert lines
    assert {line["trace_id"] for line in lines} == {trace_id}, "one run, one trace id in every service's log line"
    rpcs = {line["rpc"].split("/")[0] for line in lines}
    assert rpcs == DOWNSTREAM | {"loomflow.v1.AgentService"}
    for line in lines:
        assert line["user_id"] == "alice", line
        assert line["session_id"] == "conv-7", line
        assert line["run_id"] == reply.run_id, line
        assert line["level"] == "info"
        assert line["code"] == "OK"
    assert CANARY not in traced.logs.text, "a prompt or metadata value reached the logs"
    attributes = [str(dict(s.attributes or {})) for s in traced.spans.get_finished_spans()]
    assert not [a for a in attributes if CANARY in a], "a prompt or metadata value reached a span attribute"


async def test_without_an_exporter_one_run_still_has_one_trace_id_in_every_services_log(tmp_path: Path) -> None:
    """Nothing records spans (no OTLP endpoint, no capture): the lean server path still propagates."""
    overrides = _traced_overrides(tmp_path)
    try:
        with captured_logs() as logs:
            async with running_suite(tmp_path / "data", overrides=overrides) as suite:
                first = await _run(suite, "alice", "conv-1")
                second = await _run(suite, "bob", "conv-2")
    finally:
        tracing.uninstrument_grpc()  # process-global: the tests that follow expect plain channels
    trace_ids = []
    for reply, user in ((first, "alice"), (second, "bob")):
        lines = [line for line in logs.rpc_lines() if line.get("run_id") == reply.run_id]
        assert {line["rpc"].split("/")[0] for line in lines} == DOWNSTREAM | {"loomflow.v1.AgentService"}
        (trace_id,) = {line["trace_id"] for line in lines}
        assert int(trace_id, 16) != 0
        assert {line["user_id"] for line in lines} == {user}
        trace_ids.append(trace_id)
    assert trace_ids[0] != trace_ids[1], "two runs, two traces"
