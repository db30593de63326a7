"""Idempotent calls retry UNAVAILABLE within their deadline; calls that are not idempotent never retry."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from loomflow.client import Agent, MemoryClient, RateLimited, RetryPolicy, Unavailable, scope
from loomflow.testing.processes import free_port
from loomflow.testing.suite import running_suite

FAST = RetryPolicy(attempts=50, base_delay_s=0.02, max_delay_s=0.1)


async def test_an_idempotent_call_retries_until_the_server_comes_up(tmp_path: Path) -> None:
    port = free_port()
    memory = MemoryClient(f"127.0.0.1:{port}", timeout=20, retry=FAST)
    call = asyncio.create_task(memory.recall("anything", user_id="alice"))
    await asyncio.sleep(0.3)
    assert not call.done(), "the call keeps retrying while nothing listens"
    async with running_suite(tmp_path, services="memory", overrides={"": {"port": port}}):
        assert await call == []
    await memory.close()


async def test_a_call_that_is_not_idempotent_fails_at_once(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    memory = MemoryClient(address, timeout=5, retry=FAST)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await memory.remember("not twice", user_id="alice")
    agent = Agent(address, timeout=5)
    with pytest.raises(Unavailable):
        await agent.run("never retried: a run calls a model and charges a budget", user_id="alice")
    assert time.monotonic() - started < 2
    await memory.close()
    await agent.close()


async def test_retries_stop_at_the_deadline() -> None:
    memory = MemoryClient(f"127.0.0.1:{free_port()}", timeout=0.5, retry=FAST)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await memory.recall("anything", user_id="alice")
    assert 0.3 < time.monotonic() - started < 1.5
    await memory.close()


def test_scope_needs_exactly_one_of_user_id_or_anonymous() -> None:
    assert scope("alice").user_id == "alice"
    assert scope(anonymous=True).WhichOneof("kind") == "anonymous"
    with pytest.raises(ValueError, match="user_id"):
        scope()
    with pytest.raises(ValueError, match="not both"):
        scope("alice", anonymous=True)


async def test_a_rate_limited_run_is_retried_after_the_servers_hint(tmp_path: Path) -> None:
    # One run per second with no burst: the second run at once is refused before it starts, then retried.
    limits = {"": {"rate_limit_per_user": 1.0, "rate_burst": 1}}
    async with running_suite(tmp_path, overrides=limits) as suite:
        agent = Agent(suite.address, timeout=10)
        await agent.run("first", user_id="alice")
        started = time.monotonic()
        second = await agent.run("second", user_id="alice")
        assert second.output.startswith("second")
        assert time.monotonic() - started >= 0.5, "the retry waited for the server's hint"
        hurried = Agent(suite.address, timeout=0.3)
        with pytest.raises(RateLimited) as caught:
            await hurried.run("third", user_id="alice")
        assert caught.value.retry_after_s > 0
        await agent.close()
        await hurried.close()
