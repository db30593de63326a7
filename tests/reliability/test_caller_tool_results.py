"""Hostile ContinueRun calls: another tenant's run, unknown, duplicated, missing, huge or NUL results.

Each is refused with a clear status and leaves the paused run as it was: the
right results still resume it. Runs on both agent stores (SQLite, Postgres).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from loomflow.v1 import agent_pb2, agent_pb2_grpc, tenancy_pb2
from tests.agent.conftest import Tenancy, secure_suite, token
from tests.support import backends

PROMPT = '/call lookup_order {"order_id": "42"}'
LOOKUP = agent_pb2.CallerTool(name="lookup_order", description="Looks an order up.")
MAX_CHARS = 1000


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def tenancy(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> AsyncIterator[Tenancy]:
    async with contextlib.AsyncExitStack() as stack:
        dsn = ""
        if request.param == "postgres":
            dsn = await stack.enter_async_context(backends.postgres_schema(f"paused_{unique}"))
        settings = {"store_dsn": dsn, "max_caller_result_chars": MAX_CHARS}
        yield await stack.enter_async_context(secure_suite(tmp_path, agent=settings))


def metadata(user: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token(user)}"),)


async def pause(stub: agent_pb2_grpc.AgentServiceAsyncStub, user: str) -> agent_pb2.RunResponse:
    options = agent_pb2.RunOptions(prompt=PROMPT, caller_tools=[LOOKUP])
    reply: agent_pb2.RunResponse = await stub.Run(
        agent_pb2.RunRequest(scope=tenancy_pb2.UserScope(user_id=user), options=options), metadata=metadata(user)
    )
    assert reply.status == agent_pb2.RUN_STATUS_REQUIRES_ACTION
    return reply


async def refused(
    stub: agent_pb2_grpc.AgentServiceAsyncStub, user: str, run_id: str, results: list[agent_pb2.ToolResult]
) -> grpc.StatusCode:
    request = agent_pb2.ContinueRunRequest(scope=tenancy_pb2.UserScope(user_id=user), run_id=run_id, results=results)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ContinueRun(request, metadata=metadata(user))
    code: grpc.StatusCode = caught.value.code()
    return code


async def test_hostile_results_are_refused_and_the_run_stays_resumable(tenancy: Tenancy) -> None:
    stub = agent_pb2_grpc.AgentServiceStub(tenancy.suite.channel)
    paused = await pause(stub, "alice")
    call_id = paused.pending_tool_calls[0].call_id
    good = agent_pb2.ToolResult(call_id=call_id, output="shipped")

    assert await refused(stub, "bob", paused.run_id, [good]) == grpc.StatusCode.NOT_FOUND, (
        "another tenant's run id must be NOT_FOUND, never resumed"
    )
    unknown = agent_pb2.ToolResult(call_id="call-forged", output="x")
    assert await refused(stub, "alice", paused.run_id, [good, unknown]) == grpc.StatusCode.INVALID_ARGUMENT
    assert await refused(stub, "alice", paused.run_id, [good, good]) == grpc.StatusCode.INVALID_ARGUMENT
    huge = agent_pb2.ToolResult(call_id=call_id, output="x" * (MAX_CHARS + 1))
    assert await refused(stub, "alice", paused.run_id, [huge]) == grpc.StatusCode.INVALID_ARGUMENT
    nul = agent_pb2.ToolResult(call_id=call_id, output="a\x00b")
    assert await refused(stub, "alice", paused.run_id, [nul]) == grpc.StatusCode.INVALID_ARGUMENT
    assert await refused(stub, "alice", "no-such-run", [good]) == grpc.StatusCode.NOT_FOUND

    bobs = await pause(stub, "bob")
    forged = agent_pb2.ToolResult(call_id=bobs.pending_tool_calls[0].call_id, output="x")
    assert await refused(stub, "alice", bobs.run_id, [forged]) == grpc.StatusCode.NOT_FOUND

    resumed = await stub.ContinueRun(
        agent_pb2.ContinueRunRequest(
            scope=tenancy_pb2.UserScope(user_id="alice"), run_id=paused.run_id, results=[good]
        ),
        metadata=metadata("alice"),
    )
    assert resumed.result.status == agent_pb2.RUN_STATUS_COMPLETED, "nothing was lost by the refused attempts"
    assert "[lookup_order] shipped" in resumed.result.output


async def test_a_caller_tool_may_not_shadow_a_server_tool(tenancy: Tenancy) -> None:
    stub = agent_pb2_grpc.AgentServiceStub(tenancy.suite.channel)
    options = agent_pb2.RunOptions(prompt="hi", caller_tools=[agent_pb2.CallerTool(name="calculator")])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Run(
            agent_pb2.RunRequest(scope=tenancy_pb2.UserScope(user_id="alice"), options=options),
            metadata=metadata("alice"),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "caller_tools[0].name" in (caught.value.details() or "")
