"""Approvals and checks in process, on every store, with a clock the test moves: fail-closed paths."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from loomflow.kernel.errors import Aborted, FailedPrecondition, NotFound, Unavailable
from loomflow.policy.approvals import Approvals
from loomflow.policy.book import PolicyBook
from loomflow.policy.checks import Checker
from loomflow.policy.models import (
    ApprovalRequest,
    ApprovalStatus,
    Decision,
    Policy,
    Resolution,
    ResolutionInput,
    Rule,
)
from loomflow.policy.store import PolicyStore
from tests.policy.conftest import START_MS, Backend
from tests.support.clock import FakeClock

APPROVE = ResolutionInput(Resolution.APPROVE, "operator:oncall")


@pytest.fixture
async def approvals(store: PolicyStore, clock: FakeClock) -> AsyncIterator[Approvals]:
    running = Approvals(store, default_timeout_ms=1000, sweep_seconds=0, queue_size=3, clock=clock)
    await running.start()
    try:
        yield running
    finally:
        await running.close()


async def test_timeout_zero_means_the_default_deadline(approvals: Approvals, unique: str) -> None:
    created = await approvals.request(ApprovalRequest(f"alice-{unique}", "shell"))
    assert created.expires_at == START_MS + 1000
    assert (
        await approvals.request(ApprovalRequest(f"alice-{unique}", "shell"), timeout_ms=5)
    ).expires_at == START_MS + 5


async def test_nobody_answering_before_the_deadline_is_a_deny(
    approvals: Approvals, clock: FakeClock, unique: str
) -> None:
    tenant = f"alice-{unique}"
    created = await approvals.request(ApprovalRequest(tenant, "shell"), timeout_ms=100)
    clock.advance(99)
    assert (await approvals.get(tenant, created.id)).status is ApprovalStatus.PENDING
    clock.advance(1)
    assert (await approvals.get(tenant, created.id)).status is ApprovalStatus.EXPIRED
    with pytest.raises(FailedPrecondition, match="counts as denied"):
        await approvals.resolve(tenant, created.id, APPROVE)


async def test_the_sweep_expires_due_approvals_and_tells_watchers(
    approvals: Approvals, clock: FakeClock, unique: str
) -> None:
    tenant = f"alice-{unique}"
    watch = approvals.watch(tenant, include_resolved=True)
    events = aiter(watch)
    created = await approvals.request(ApprovalRequest(tenant, "shell"), timeout_ms=10)
    assert (await anext(events)).status is ApprovalStatus.PENDING
    clock.advance(10)
    assert await approvals.sweep() >= 1
    expired = await anext(events)
    assert (expired.id, expired.status, expired.resolved_at) == (created.id, ApprovalStatus.EXPIRED, START_MS + 10)
    assert await approvals.pending(tenant) == []
    watch.close()


async def test_pending_never_offers_an_approval_past_its_deadline(
    approvals: Approvals, clock: FakeClock, unique: str
) -> None:
    tenant = f"alice-{unique}"
    await approvals.request(ApprovalRequest(tenant, "shell"), timeout_ms=10)
    clock.advance(10)
    assert await approvals.pending(tenant) == [], "an approval past its deadline must not be replayed as pending"


async def test_a_watcher_that_falls_behind_is_ended_not_silently_skipped(approvals: Approvals, unique: str) -> None:
    tenant = f"alice-{unique}"
    watch = approvals.watch(tenant)
    for _ in range(4):  # the queue holds 3
        await approvals.request(ApprovalRequest(tenant, "shell"))
    with pytest.raises(Aborted, match="replay_pending"):
        async for _ in watch:
            pass


async def test_closing_the_service_ends_every_watch(approvals: Approvals, unique: str) -> None:
    watch = approvals.watch(None)
    reader = asyncio.create_task(anext(aiter(watch), None))
    await asyncio.sleep(0)
    await approvals.close()
    assert await asyncio.wait_for(reader, 2) is None


async def test_reading_an_unknown_approval_is_not_found(approvals: Approvals, unique: str) -> None:
    with pytest.raises(NotFound):
        await approvals.get(f"alice-{unique}", "apr_nope")


# -- checks fail closed ---------------------------------------------------------


async def test_a_check_that_cannot_read_the_policy_is_an_error_never_an_allow(backend: Backend) -> None:
    store = backend.open()
    await store.start()
    book = PolicyBook(store, refresh_seconds=0)
    await book.start()
    checker = Checker(book, Approvals(store, sweep_seconds=0))
    await store.close()  # the store goes away
    with pytest.raises(Unavailable):
        await checker.check("uncached-tenant", "calculator", {}, ())


async def test_an_ask_whose_remembered_answer_cannot_be_read_is_an_error_never_an_allow(backend: Backend) -> None:
    store = backend.open()
    await store.start()
    book = PolicyBook(store, refresh_seconds=0)
    await book.put("alice", Policy(rules=(Rule("ask", "*", Decision.ASK),)))
    await book.start()
    checker = Checker(book, Approvals(store, sweep_seconds=0))
    assert (await checker.check("alice", "shell", {}, (), run_id="r1")).verdict.decision is Decision.ASK
    await store.close()
    assert (await checker.check("alice", "shell", {}, ())).verdict.decision is Decision.ASK  # no run: no store read
    with pytest.raises(Unavailable):
        await checker.check("alice", "shell", {}, (), run_id="r1")


async def test_the_policy_cache_is_bounded(store: PolicyStore) -> None:
    book = PolicyBook(store, max_cached=5, refresh_seconds=0)
    await book.start()
    for i in range(50):
        await book.applicable(f"tenant-{i}")
    assert len(book._cache) == 5
