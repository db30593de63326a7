"""One tenant's tool calls cannot hold another tenant's: the worker pool is shared fairly.

Synchronous tools run in a small pool of worker processes. A tenant whose calls
spin until their deadline used to hold every worker, and every other tenant's
call queued behind all of them (first come, first served). Now a tenant holds
at most its share of the pool (all workers but one), waiting calls are served
round-robin across tenants, and workers run tools at a lower CPU priority than
the Agent. The assertions are about order, not speed: the quiet tenant's call
must finish while the noisy tenant's calls are all still running.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest

from loomflow.agent.context import RunContext
from loomflow.agent.tools.builtins import calculator
from loomflow.agent.tools.registry import Tool
from loomflow.agent.tools.workers import ToolWorkers, WorkerLimits
from loomflow.kernel.tenancy import scope_for
from tests.reliability import hostile_tools

SPIN_DEADLINE_S = 4.0


def context(tenant: str) -> RunContext:
    return RunContext(tenant, "s", f"run-{tenant}", scope_for(tenant), time.monotonic() + 60)


async def call(workers: ToolWorkers, tenant: str, target: Tool, timeout_s: float, **kwargs: object) -> str:
    module, name = target.import_path()
    return await workers.run(module, name, dict(kwargs), context(tenant), timeout_s)


@pytest.fixture
async def workers() -> AsyncIterator[ToolWorkers]:
    pool = ToolWorkers(WorkerLimits(processes=2, preload=(hostile_tools.__name__, calculator.import_path()[0]), nice=7))
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


async def test_a_tenant_spinning_on_every_worker_it_may_take_does_not_delay_another_tenants_call(
    workers: ToolWorkers,
) -> None:
    noisy = [asyncio.create_task(call(workers, "mallory", hostile_tools.spin, SPIN_DEADLINE_S)) for _ in range(4)]
    await asyncio.sleep(0.3)  # mallory's calls have taken what they may and queued the rest
    assert workers.held("mallory") == 1, "a tenant holds at most its share: all workers but one"
    answer = await call(workers, "alice", calculator, SPIN_DEADLINE_S, expression="6*7")
    assert answer == "42"
    assert not any(task.done() for task in noisy), "alice's call waited for one of mallory's to end"
    outcomes = await asyncio.gather(*noisy, return_exceptions=True)
    assert all(isinstance(o, TimeoutError) for o in outcomes), outcomes
    assert workers.held("mallory") == 0
    assert workers.held("alice") == 0


async def test_waiting_calls_are_served_round_robin_across_tenants(workers: ToolWorkers) -> None:
    # One worker spins for a while (mallory's share); the other serves the queue one call at a time.
    blocker = asyncio.create_task(call(workers, "mallory", hostile_tools.spin, 2.0))
    await asyncio.sleep(0.3)
    finished: list[str] = []

    async def quick(tenant: str) -> None:
        await call(workers, tenant, calculator, 10.0, expression="1+1")
        finished.append(tenant)

    # bob queues five calls before carol queues hers; served in turn, carol's does not wait for all of bob's.
    tasks = [asyncio.create_task(quick("bob")) for _ in range(5)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(quick("carol")))
    await asyncio.gather(*tasks)
    assert finished.index("carol") <= 2, f"carol waited behind bob's queue: {finished}"
    with pytest.raises(TimeoutError):
        await blocker


async def test_workers_run_tools_below_the_agents_cpu_priority(workers: ToolWorkers) -> None:
    niceness = int(await call(workers, "alice", hostile_tools.niceness, 10.0))
    assert niceness == os.nice(0) + 7, "the worker did not lower its priority by the configured amount"
