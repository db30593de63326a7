"""A tenant flooding the Agent cannot make another tenant's run wait: run slots are shared fairly.

``bench/noisy_neighbour.py`` measured one tenant, inside its per-user limits, keeping four
runs executing at once and the quiet tenants' p99 at 5-6x its value alone: their runs queued
behind that tenant's work in every service. With ``LOOMFLOW_AGENT_RUN_SLOTS`` the Agent
executes at most that many runs at once, except that a tenant with nothing running always
starts at once; a freed slot goes to the waiting tenant holding the fewest. These tests drive
the pool directly and assert order, not speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from loomflow.agent.run.slots import RunSlots
from loomflow.kernel.config import ConfigError
from tests.agent.conftest import secure_suite
from tests.agent.fakes.provider import FakeOpenAI, Reply


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def waiter(slots: RunSlots, tenant: str) -> asyncio.Task[None]:
    return asyncio.ensure_future(slots.acquire(tenant))


async def started(task: Awaitable[None]) -> None:
    await asyncio.wait_for(task, 1.0)


async def test_with_every_slot_held_by_one_tenant_another_tenants_run_starts_at_once() -> None:
    slots = RunSlots(2)
    await slots.acquire("mallory")
    await slots.acquire("mallory")
    backlog = [waiter(slots, "mallory") for _ in range(3)]
    await settle()
    assert slots.held("mallory") == 2
    assert slots.waiting("mallory") == 3, "the pool is full: mallory's other runs wait"
    await started(slots.acquire("alice"))  # alice has nothing running: never waits behind mallory's backlog
    assert slots.held("alice") == 1
    assert not any(task.done() for task in backlog)
    for task in backlog:
        task.cancel()
    await settle()
    assert slots.waiting() == 0


async def test_a_freed_slot_goes_to_the_waiting_tenant_holding_fewest_not_the_one_waiting_longest() -> None:
    slots = RunSlots(4)
    for _ in range(4):
        await slots.acquire("mallory")
    mallory_next = waiter(slots, "mallory")  # waits first
    await settle()
    await slots.acquire("alice")  # alice's first run: at once, past the pool's capacity
    alice_second = waiter(slots, "alice")  # waits after mallory's
    await settle()
    slots.release("mallory")  # 4 in use of 4: nothing is granted
    await settle()
    assert not mallory_next.done()
    assert not alice_second.done()
    slots.release("mallory")  # 3 of 4: the slot goes to alice (holds 1) before mallory (holds 2)
    await started(alice_second)
    assert not mallory_next.done()
    assert (slots.held("alice"), slots.held("mallory")) == (2, 2)
    slots.release("alice")
    await started(mallory_next)  # then mallory gets what nobody else wants: its share is never zero


async def test_a_tenant_whose_runs_all_ended_starts_its_waiting_run_at_once() -> None:
    slots = RunSlots(1)
    await slots.acquire("alice")
    await slots.acquire("mallory")  # first run: at once, 2 in use of 1
    mallory_second = waiter(slots, "mallory")
    await settle()
    slots.release("mallory")  # mallory has nothing running again: its next run is a first run
    await started(mallory_second)
    assert slots.in_use == 2


async def test_a_waiting_run_that_is_cancelled_leaves_no_trace_and_a_granted_one_passes_its_slot_on() -> None:
    slots = RunSlots(1)
    await slots.acquire("mallory")
    first = waiter(slots, "mallory")
    second = waiter(slots, "mallory")
    await settle()
    first.cancel()  # the caller went away (or its deadline passed) while waiting
    await settle()
    assert slots.waiting("mallory") == 1
    slots.release("mallory")  # granted to the remaining waiter (mallory's first run again)
    await started(second)
    assert slots.held("mallory") == 1
    assert slots.waiting() == 0
    slots.release("mallory")
    assert slots.in_use == 0
    assert slots.held("mallory") == 0


async def test_a_run_granted_a_slot_as_it_is_cancelled_gives_the_slot_back() -> None:
    slots = RunSlots(1)
    await slots.acquire("alice")
    await slots.acquire("mallory")
    mallory_next = waiter(slots, "mallory")
    await settle()
    slots.release("mallory")  # grants mallory_next (mallory's first again) ...
    mallory_next.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await mallory_next
    assert slots.held("mallory") == 0
    assert slots.in_use == 1


async def test_the_slot_context_holds_one_slot_for_its_block_and_capacity_zero_turns_the_pool_off() -> None:
    slots = RunSlots(2)
    async with slots.slot("alice"):
        assert slots.held("alice") == 1
    assert slots.in_use == 0
    off = RunSlots(0)
    async with off.slot("alice"), off.slot("alice"), off.slot("alice"):
        assert off.in_use == 0
    with pytest.raises(ConfigError, match="LOOMFLOW_AGENT_RUN_SLOTS"):
        RunSlots(-1)


async def test_through_the_agent_a_tenant_over_its_slots_waits_while_another_tenants_run_goes_through(
    tmp_path: Path,
) -> None:
    """The pool as the Agent uses it: one slot; mallory's first run holds it (waiting on an approval)."""
    agent = {"run_slots": 1, "approval_timeout_ms": 3000}
    async with secure_suite(tmp_path, agent=agent) as tenancy:
        mallory, alice = tenancy.agent("mallory"), tenancy.agent("alice")
        holding = asyncio.ensure_future(mallory.run("/call notes_clear {}", user_id="mallory"))  # waits for approval
        await asyncio.sleep(0.5)
        second = asyncio.ensure_future(mallory.run("hello again", user_id="mallory"))
        await asyncio.sleep(0.3)
        answered = await alice.run("hello", user_id="alice")  # alice has nothing running: starts at once
        assert answered.output
        assert not holding.done()
        assert not second.done(), "mallory's second run waits for a slot while its first holds the only one"
        first = await holding  # the approval timed out: denied, and mallory's slot is free again
        assert first.interrupted
        assert (await second).output, "then mallory's waiting run goes through: its share is never zero"


async def test_the_slot_comes_back_after_the_wait_by_the_rule_a_run_starts_by() -> None:
    slots = RunSlots(1)
    await slots.acquire("mallory")
    lending = asyncio.Event()
    back = asyncio.Event()

    async def first_run() -> None:
        async with slots.lent("mallory"):
            lending.set()
            await back.wait()

    run = asyncio.ensure_future(first_run())
    await lending.wait()
    await slots.acquire("mallory")  # mallory's second run took the lent slot (its only run executing)
    back.set()
    await settle()
    assert not run.done(), "the first run waits for a slot: mallory holds the only one"
    async with slots.slot("alice"):  # another tenant with nothing running still starts at once
        assert slots.held("alice") == 1
    slots.release("mallory")  # the second run ends
    await started(run)
    assert (slots.held("mallory"), slots.in_use) == (1, 1)
    slots.release("mallory")
    assert slots.in_use == 0


async def test_a_failed_or_cancelled_remote_wait_takes_its_slot_back_at_once() -> None:
    slots = RunSlots(1)
    await slots.acquire("mallory")

    async def provider_fails() -> None:
        async with slots.lent("mallory"):
            await slots.acquire("bob")  # the lent slot went to bob
            raise RuntimeError("the provider failed")

    with pytest.raises(RuntimeError):
        await provider_fails()
    assert (slots.held("mallory"), slots.held("bob"), slots.in_use) == (1, 1, 2), "over capacity until released"
    slots.release("bob")

    async def waits_for_its_slot_back() -> None:
        async with slots.lent("mallory"):
            await slots.acquire("mallory")  # another of mallory's runs takes it; the lender must queue
        raise AssertionError("not reached: cancelled while waiting for its slot")

    task = asyncio.ensure_future(waits_for_its_slot_back())
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (slots.held("mallory"), slots.in_use) == (2, 2), "the cancelled lender holds its slot again"
    slots.release("mallory")
    slots.release("mallory")
    assert slots.in_use == 0


async def test_through_the_agent_a_run_waiting_on_a_remote_model_lends_its_slot(tmp_path: Path) -> None:
    """One slot; mallory's two runs on a provider still thinking about the first: the second run's model
    request reaches the provider while the first waits (before, it waited for the first run's slot)."""
    fake = await FakeOpenAI().start()
    thinking = asyncio.Event()
    try:
        fake.queue(Reply(text="first", held_until=thinking), Reply(text="second"))
        agent = {"model": "openai:gpt-fake", "openai_base_url": fake.base_url, "run_slots": 1}
        async with secure_suite(tmp_path, agent=agent) as tenancy:
            mallory = tenancy.agent("mallory")
            first = asyncio.ensure_future(mallory.run("one", user_id="mallory"))
            await wait_until(lambda: len(fake.requests) == 1)
            second = await mallory.run("two", user_id="mallory")  # completes while the first still waits
            assert second.output == "second"
            assert not first.done()
            thinking.set()
            assert (await first).output == "first"
    finally:
        thinking.set()
        await fake.stop()


async def wait_until(condition: Callable[[], bool], within_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)
