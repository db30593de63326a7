"""When things go wrong mid-run: dependencies dying, deadlines, cancellations, models failing.

The Agent runs in its own server here and calls Memory + Audit in a second one and
Budget + Policy in a third, so one dependency can be stopped while a run is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loomflow.client import Agent, BudgetClient, FailedPrecondition, Unavailable, limit
from loomflow.kernel.auth import Role
from loomflow.testing.processes import ServeProcess
from loomflow.testing.suite import TEST_JWT_SECRET, RunningSuite, running_suite
from tests.agent.conftest import audit_keys, secure_suite, token, write_script
from tests.agent.fakes.provider import FakeOpenAI, Reply

SCRIPT: list[dict[str, Any]] = [
    {"when": "slow", "turns": [{"delay_ms": 1500, "text": "late"}]},
    {"when": "flaky", "turns": [{"error": 503}, {"text": "never"}]},
    {"when": "refused", "turns": [{"error": 400}]},
    {"when": "loop", "turns": [{"tool_calls": [{"name": "calculator", "arguments": {"expression": "1"}}]}] * 5},
]


@dataclass
class Split:
    """The Agent in one server; Memory + Audit in another; Budget + Policy in a third."""

    agent: RunningSuite
    memory_audit: RunningSuite
    budget_policy: RunningSuite

    def client(self, user: str = "alice") -> Agent:
        return Agent(self.agent.address, token=token(user), timeout=30)

    def budget(self) -> BudgetClient:
        return BudgetClient(self.budget_policy.channel, token=token("ops", Role.OPERATOR))

    async def reserved(self, user: str = "alice") -> int:
        status = await self.budget().get_status(user_id=user)
        return sum(u.reserved for u in status.limits)


@pytest.fixture
async def split(tmp_path: Path) -> AsyncIterator[Split]:
    script = write_script(tmp_path / "script.json", SCRIPT)
    async with contextlib.AsyncExitStack() as stack:
        memory_audit = await stack.enter_async_context(
            running_suite(tmp_path / "b", "memory,audit", insecure=False, overrides={"audit": audit_keys()})
        )
        budget_policy = await stack.enter_async_context(running_suite(tmp_path / "c", "budget,policy", insecure=False))
        agent = await stack.enter_async_context(
            running_suite(
                tmp_path / "a",
                "agent",
                insecure=False,
                overrides={
                    "agent": {
                        "memory_address": memory_audit.address,
                        "audit_address": memory_audit.address,
                        "budget_address": budget_policy.address,
                        "policy_address": budget_policy.address,
                        "script_file": script,
                        "model": "scripted",
                        "models": "echo",
                        "model_backoff_ms": 10,
                        "call_timeout_ms": 2000,
                    }
                },
            )
        )
        split = Split(agent, memory_audit, budget_policy)
        # A limit makes GetStatus report what is reserved against it.
        await split.budget().set_limits([limit("total_tokens", 10**9)], target="default_user", anonymous=True)
        yield split


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 3.0) -> bool:
    """Polls ``check`` until it holds or ``within`` seconds pass; returns its last answer."""
    for _ in range(int(within / 0.02)):
        if await check():
            return True
        await asyncio.sleep(0.02)
    return await check()


async def holding(split: Split) -> bool:
    return await split.reserved() > 0


async def wait_for_no_hold(split: Split) -> int:
    async def released() -> bool:
        return await split.reserved() == 0

    await eventually(released)
    return await split.reserved()


async def test_a_service_killed_mid_run_leaves_no_outstanding_reservation_and_the_caller_sees_unavailable(
    split: Split,
) -> None:
    run = asyncio.create_task(split.client().run("slow thinking", user_id="alice"))
    assert await eventually(lambda: holding(split)), "the run holds a reservation while the model thinks"
    await split.memory_audit.server.stop(0)  # memory and audit die mid-run
    with pytest.raises(Unavailable) as caught:
        await run
    assert "memory" in caught.value.message or "audit" in caught.value.message
    assert await wait_for_no_hold(split) == 0, "no hold may outlive the failed run"


async def test_a_memory_process_sigkilled_mid_run_leaves_no_reservation(tmp_path: Path) -> None:
    """The crash shape: Memory and Audit in a real `loomflow serve` process that gets SIGKILL."""
    env = {"LOOMFLOW_INSECURE": "false", "LOOMFLOW_AUTH_JWT_SECRET": TEST_JWT_SECRET, "LOOMFLOW_TRACING": "false"}
    env |= {f"LOOMFLOW_AUDIT_{k.upper()}": v for k, v in audit_keys().items()}
    script = write_script(tmp_path / "script.json", SCRIPT)
    with ServeProcess("memory,audit", tmp_path / "proc", env=env) as process:
        agent_settings = {
            "memory_address": process.address,
            "audit_address": process.address,
            "script_file": script,
            "model": "scripted",
        }
        async with secure_suite(tmp_path / "rest", agent=agent_settings, services="budget,policy,agent") as tenancy:
            budget = tenancy.budget()
            await budget.set_limits([limit("total_tokens", 10**9)], target="default_user", anonymous=True)
            run = asyncio.create_task(tenancy.agent("alice").run("slow", user_id="alice"))

            async def held() -> bool:
                return sum(u.reserved for u in (await budget.get_status(user_id="alice")).limits) > 0

            assert await eventually(held)
            process.kill()
            with pytest.raises(Unavailable):
                await run
            status = await budget.get_status(user_id="alice")
            assert sum(u.reserved for u in status.limits) == 0


async def test_memory_down_before_the_run_releases_the_hold_taken_in_parallel(split: Split) -> None:
    await split.memory_audit.server.stop(0)
    with pytest.raises(Unavailable, match="memory"):
        await split.client().run("hello", user_id="alice", model="echo")
    assert await split.reserved() == 0


async def test_a_caller_that_gives_up_mid_run_leaves_no_reservation(split: Split) -> None:
    run = asyncio.create_task(split.client().run("slow", user_id="alice"))
    assert await eventually(lambda: holding(split))
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    assert await wait_for_no_hold(split) == 0


async def test_a_stream_the_caller_abandons_leaves_no_reservation(split: Split) -> None:
    async def consume() -> None:
        async for _ in split.client().stream("slow", user_id="alice"):
            pass

    task = asyncio.create_task(consume())
    assert await eventually(lambda: holding(split))
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await wait_for_no_hold(split) == 0


async def test_the_run_timeout_interrupts_the_run_and_is_charged_as_wall_clock(split: Split) -> None:
    result = await split.client().run("slow", user_id="alice", timeout_s=0.3)
    assert result.interrupted
    assert result.interruption_reason.startswith("timeout")
    assert result.interruption_reason == "timeout: the run took longer than 300 ms"
    assert 300 <= result.usage.wall_clock_ms < 1000
    status = await split.budget().get_status(user_id="alice")
    assert status.total.wall_clock_ms == result.usage.wall_clock_ms
    assert await split.reserved() == 0


async def test_a_short_caller_deadline_ends_the_run_in_time_to_answer(split: Split) -> None:
    client = Agent(split.agent.address, token=token("alice"), timeout=1.0)
    result = await client.run("slow", user_id="alice")
    assert result.interruption_reason.startswith("timeout"), "the run fits in the caller's deadline"
    await client.close()


async def test_max_turns_interrupts_a_run_that_keeps_calling_tools(split: Split) -> None:
    result = await split.client().run("loop", user_id="alice", max_turns=3)
    assert result.interrupted
    assert result.interruption_reason == "max_turns: stopped after 3 turns"
    assert result.turns == 3
    assert len(result.tool_calls) == 3


async def test_a_transient_model_error_is_retried_and_charged_once(split: Split) -> None:
    result = await split.client().run("flaky", user_id="alice")
    assert not result.interrupted
    status = await split.budget().get_status(user_id="alice")
    assert status.total.total_tokens == result.usage.total_tokens


async def test_a_model_refusing_the_request_fails_the_run_and_releases(split: Split) -> None:
    with pytest.raises(FailedPrecondition, match="refused"):
        await split.client().run("refused", user_id="alice")
    assert await split.reserved() == 0


async def test_a_provider_down_after_retries_is_unavailable(tmp_path: Path) -> None:
    fake = await FakeOpenAI().start()
    try:
        fake.queue(*[Reply(status=503)] * 3)
        agent = {"model": "openai:gpt-fake", "openai_base_url": fake.base_url, "model_attempts": 3}
        agent["model_backoff_ms"] = 5
        async with secure_suite(tmp_path, agent=agent) as tenancy:
            with pytest.raises(Unavailable, match="gpt-fake unavailable"):
                await tenancy.agent("alice").run("hi", user_id="alice")
            assert len(fake.requests) == 3
            status = await tenancy.budget().get_status(user_id="alice")
            assert status.total.total_tokens == 0
    finally:
        await fake.stop()


async def test_a_provider_model_runs_tools_and_its_reported_usage_is_what_is_charged(tmp_path: Path) -> None:
    fake = await FakeOpenAI().start()
    try:
        fake.queue(
            Reply(tool_calls=[("c1", "calculator", {"expression": "6*7"})], input_tokens=500, cached_tokens=400),
            Reply(text="It is 42.", input_tokens=530, output_tokens=6, cached_tokens=500),
        )
        agent = {"model": "openai:gpt-fake", "openai_base_url": fake.base_url}
        async with secure_suite(tmp_path, agent=agent) as tenancy:
            result = await tenancy.agent("alice").run("what is 6*7?", user_id="alice")
            status = await tenancy.budget().get_status(user_id="alice")
        assert result.output == "It is 42."
        assert result.tool_calls[0].result == "42"
        assert (result.usage.input_tokens, result.usage.cached_input_tokens) == (1030, 900)
        assert status.total.input_tokens == 1030
        assert status.total.cached_input_tokens == 900
        second_request = fake.requests[1]["messages"]
        assert second_request[-1] == {"role": "tool", "tool_call_id": "c1", "content": "42"}
    finally:
        await fake.stop()
