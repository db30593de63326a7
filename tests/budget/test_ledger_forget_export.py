"""Forget and Export of a tenant's budget state, checked against every ledger backend.

Forget erases the tenant's usage (every window), reservations and override; open holds go back to
the global pool; the global totals keep the aggregate. A Commit racing the erase cannot write the
tenant's usage back. Export returns everything stored about the tenant and nothing of others.
"""

from __future__ import annotations

import asyncio

from loomflow.budget.core import Budget
from loomflow.budget.models import Dimension, Limit, LimitTarget, State, Usage, Window
from loomflow.kernel.errors import NotFound
from tests.support.clock import FakeClock

TOTAL = Dimension.TOTAL_TOKENS
# Ids a careless key scheme or glob would confuse with "alice" (Redis SCAN patterns, prefixes).
LOOKALIKES = ("alice:", "alice*", "al?ce", "[a]lice", "5:alice", "alice\\")


def usage(input_tokens: int, output_tokens: int) -> Usage:
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens)


async def spend(budget: Budget, tenant: str, call: str, tokens: int) -> str:
    held = await budget.reserve(tenant, call, "echo", usage(tokens, 0))
    rid = held.outcome.reservation.reservation_id
    await budget.commit(tenant, rid, usage(tokens, 0))
    return rid


async def global_used(budget: Budget) -> tuple[int, int]:
    status = await budget.status("observer")
    for state in status.snapshot.limits:
        if state.applies_to.value == "global" and state.limit.dimension is TOTAL:
            return state.committed, state.reserved
    raise AssertionError("no global total-tokens limit")


async def test_forget_erases_usage_reservations_and_override_and_leaves_others(budget: Budget) -> None:
    await budget.set_limits(LimitTarget.GLOBAL, "", [Limit(TOTAL, Window.NONE, 1_000_000)])
    await budget.set_limits(LimitTarget.USER, "alice", [Limit(TOTAL, Window.DAILY, 5_000)])
    await spend(budget, "alice", "a-1", 100)
    open_hold = await budget.reserve("alice", "a-2", "echo", usage(40, 0))
    for other in ("bob", *LOOKALIKES):
        await spend(budget, other, "o-1", 7)
    before_global = await global_used(budget)
    assert before_global == (100 + 7 * (1 + len(LOOKALIKES)), 40)

    receipt = await budget.forget("alice")

    assert receipt.reservations_deleted == 2
    assert receipt.open_holds_released == 1
    assert receipt.usage_windows_deleted >= 3, "all-time, day and month buckets"
    assert receipt.override_removed
    assert (await budget.status("alice")).snapshot.total.total_tokens == 0
    assert await budget.ledger.get_limits(LimitTarget.USER, "alice") == []
    exported = await budget.export("alice")
    assert (exported.usage, exported.reservations, exported.override) == ({}, [], [])
    assert await global_used(budget) == (before_global[0], 0), "aggregate kept, the open hold returned"
    for other in ("bob", *LOOKALIKES):
        kept = await budget.export(other)
        assert kept.usage["all"].total_tokens == 7, f"{other!r}'s usage must survive alice's erase"
        assert len(kept.reservations) == 1, f"{other!r}'s reservation must survive alice's erase"
    with_rid = open_hold.outcome.reservation.reservation_id
    try:
        await budget.commit("alice", with_rid, usage(40, 0))
    except NotFound:
        pass
    else:
        raise AssertionError("a Commit of a forgotten reservation must be NOT_FOUND, not booked again")


async def test_forget_is_idempotent_and_a_new_reserve_starts_from_zero(budget: Budget) -> None:
    await budget.set_limits(LimitTarget.DEFAULT_USER, "", [Limit(TOTAL, Window.NONE, 150)])
    await spend(budget, "carol", "c-1", 100)
    await budget.forget("carol")
    again = await budget.forget("carol")
    assert (again.reservations_deleted, again.open_holds_released, again.usage_windows_deleted) == (0, 0, 0)
    assert not again.override_removed
    # The same call id is not replayed: the erased reservation is gone, and 150 fits again.
    fresh = await budget.reserve("carol", "c-1", "echo", usage(150, 0))
    assert not fresh.outcome.replayed


async def test_a_commit_racing_the_forget_cannot_write_usage_back(budget: Budget) -> None:
    await budget.set_limits(LimitTarget.GLOBAL, "", [Limit(TOTAL, Window.NONE, 10_000_000)])
    holds = [await budget.reserve("dave", f"d-{n}", "echo", usage(10, 0)) for n in range(60)]

    async def commit(rid: str) -> bool:
        try:
            await budget.commit("dave", rid, usage(10, 0))
        except NotFound:
            return False
        return True

    racing = [commit(h.outcome.reservation.reservation_id) for h in holds]
    results = await asyncio.gather(*racing[:30], budget.forget("dave"), *racing[30:])
    booked_before = sum(1 for r in results if r is True)
    exported = await budget.export("dave")
    assert exported.usage == {}, f"usage written back after the erase: {exported.usage}"
    assert exported.reservations == [], "no reservation of the erased tenant may survive"
    committed, reserved = await global_used(budget)
    assert reserved == 0, "every open hold went back to the global pool"
    assert committed == 10 * booked_before, "the global aggregate keeps exactly what was booked"


async def test_export_lists_windows_reservations_and_override(budget: Budget, clock: FakeClock) -> None:
    await budget.set_limits(LimitTarget.USER, "erin", [Limit(TOTAL, Window.MONTHLY, 9_000)])
    committed_rid = await spend(budget, "erin", "e-1", 30)
    held = await budget.reserve("erin", "e-2", "echo", usage(5, 0))
    released = await budget.reserve("erin", "e-3", "echo", usage(6, 0))
    await budget.release("erin", released.outcome.reservation.reservation_id)
    await spend(budget, "frank", "f-1", 999)

    exported = await budget.export("erin")

    assert exported.usage["all"].total_tokens == 30
    assert sum(1 for key in exported.usage if key.startswith("d")) == 1
    assert sum(1 for key in exported.usage if key.startswith("m")) == 1
    states = {k.reservation.call_id: (k.state, k.charged) for k in exported.reservations}
    assert set(states) == {"e-1", "e-2", "e-3"}
    assert states["e-1"][0] is State.COMMITTED
    assert states["e-1"][1] is not None
    assert states["e-1"][1].total_tokens == 30
    assert states["e-2"] == (State.HELD, None)
    assert states["e-3"] == (State.RELEASED, None)
    ids = {k.reservation.reservation_id for k in exported.reservations}
    assert {committed_rid, held.outcome.reservation.reservation_id} <= ids
    assert exported.override == [Limit(TOTAL, Window.MONTHLY, 9_000)]
