"""One tenant cannot stall the others through a tool.

``/call calculator {"expression": "((9**999)**999)**8"}`` (allowed by the default
policy) held the Agent's CPU for ~6 s — the GIL, so every other tenant's run waited.
Now the calculator bounds every intermediate result before computing it, synchronous
tools run in worker processes that are killed at the call's deadline (CPU and memory
limited, answers size-capped), and asynchronous tools are cancelled at theirs.

The bounds below are relative to the stall, not speed claims: a quiet tenant's trivial
run must finish while a hostile call is in progress, well before the stall would have
ended (bench/noisy_neighbour.py measures the latencies).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from loomflow.testing.suite import running_suite
from loomflow.v1 import agent_pb2, agent_pb2_grpc, tenancy_pb2

if TYPE_CHECKING:
    from loomflow.v1.agent_pb2_grpc import AgentServiceAsyncStub as Agent

BOMB = '/call calculator {"expression": "((9**999)**999)**8"}'
TOOL_TIMEOUT_S = 1.0
QUIET_BOUND_S = 1.0
"""A quiet tenant's echo run takes milliseconds; the stall it must not see took seconds."""


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    overrides = {
        "agent": {
            "tools": "tests.reliability.hostile_tools:TOOLS",
            "tool_timeout_ms": int(TOOL_TIMEOUT_S * 1000),
            "max_tool_result_chars": 1000,
            "recall_limit": 0,
        }
    }
    async with running_suite(tmp_path, overrides=overrides) as suite:
        yield agent_pb2_grpc.AgentServiceStub(suite.channel)


async def run(agent: Agent, user: str, prompt: str) -> tuple[agent_pb2.RunResponse, float]:
    started = time.perf_counter()
    reply = await agent.Run(
        agent_pb2.RunRequest(scope=tenancy_pb2.UserScope(user_id=user), options=agent_pb2.RunOptions(prompt=prompt)),
        timeout=60,
    )
    return reply, time.perf_counter() - started


async def quiet_latencies_while(agent: Agent, hostile: asyncio.Task[object]) -> list[float]:
    """Trivial runs of another tenant, one after the other, for as long as the hostile run lasts (≥ 1.5 s)."""
    latencies: list[float] = []
    started = time.perf_counter()
    while not hostile.done() or time.perf_counter() - started < 1.5:
        _, took = await run(agent, "quiet-alice", "hello")
        latencies.append(took)
    return latencies


def tool_result(reply: agent_pb2.RunResponse) -> agent_pb2.ToolCallRecord:
    (record,) = reply.tool_calls
    return record


async def test_the_calculator_bomb_fails_promptly_and_other_tenants_are_not_stalled(
    agent: Agent,
) -> None:
    await run(agent, "quiet-alice", "warm up")
    bomb = asyncio.create_task(run(agent, "mallory", BOMB))
    latencies = await quiet_latencies_while(agent, bomb)
    reply, bomb_s = await bomb
    assert "larger than 4096 bits" in tool_result(reply).result, tool_result(reply).result
    assert max(latencies) < QUIET_BOUND_S, f"a quiet tenant waited {max(latencies):.2f} s behind the calculator"
    assert bomb_s < 2 * QUIET_BOUND_S, f"the bomb itself took {bomb_s:.2f} s to fail"


async def test_a_spinning_sync_tool_is_killed_at_its_deadline_and_the_next_call_works(
    agent: Agent,
) -> None:
    spin = asyncio.create_task(run(agent, "mallory", "/call spin {}"))
    latencies = await quiet_latencies_while(agent, spin)
    reply, _ = await spin
    record = tool_result(reply)
    assert "timed out" in record.result, record.result
    assert max(latencies) < QUIET_BOUND_S, f"a quiet tenant waited {max(latencies):.2f} s behind a spinning tool"
    for _ in range(3):  # more than the pool's workers: the killed one was replaced
        after, _ = await run(agent, "mallory", '/call calculator {"expression": "6*7"}')
        assert tool_result(after).result == "42"


async def test_a_tool_that_hogs_memory_or_floods_gets_an_error_or_a_capped_answer(
    agent: Agent,
) -> None:
    hog, _ = await run(agent, "mallory", "/call hog {}")
    assert "MemoryError" in tool_result(hog).result, tool_result(hog).result
    flood, _ = await run(agent, "mallory", "/call flood {}")
    assert len(tool_result(flood).result) <= 1000 + len(" …(truncated)")
    assert tool_result(flood).result.endswith("(truncated)")


async def test_an_async_tool_is_cancelled_at_its_deadline(agent: Agent) -> None:
    reply, took = await run(agent, "mallory", "/call hang {}")
    assert "timed out" in tool_result(reply).result
    assert took < 10 * TOOL_TIMEOUT_S, f"a hanging tool held its run for {took:.1f} s"
