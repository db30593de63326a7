"""The in-process ledger's bounded tenant state: LRU + idle TTL, tunable and disableable.

Eviction is documented behaviour (docs/budget.md): an evicted tenant's open holds
go back to the global pool and its usage is forgotten; global usage and limits stay.
"""

from __future__ import annotations

import pytest

from loomflow.budget.core import Budget
from loomflow.budget.ledger.inprocess import InProcessLedger
from loomflow.budget.models import Dimension, Limit, LimitTarget, Usage, Window
from loomflow.budget.pricing import PriceTable
from loomflow.budget.windows import Calendar
from loomflow.kernel.errors import NotFound, ResourceExhausted
from tests.support.clock import FakeClock

TOTAL_NONE = Limit(Dimension.TOTAL_TOKENS, Window.NONE, 100)


def budget_over(ledger: InProcessLedger, clock: FakeClock) -> Budget:
    return Budget(ledger, PriceTable.load(), Calendar(clock))


async def test_defaults_match_the_seed_bounds() -> None:
    ledger = InProcessLedger()
    assert (ledger.max_users, ledger.idle_ttl_ms) == (100_000, 24 * 3_600_000)


async def test_least_recently_used_tenant_is_evicted_beyond_max_users(clock: FakeClock) -> None:
    ledger = InProcessLedger(max_users=3)
    budget = budget_over(ledger, clock)
    for name in ["a", "b", "c"]:
        await budget.reserve(name, "c", "echo", Usage(input_tokens=1))
    await budget.status("a")  # touching a makes b the least recently used
    await budget.reserve("d", "c", "echo", Usage(input_tokens=1))
    assert len(ledger) == 3
    assert ledger.evicted == 1
    again = await budget.reserve("b", "c", "echo", Usage(input_tokens=1))
    assert not again.outcome.replayed, "b was evicted, so its idempotency record is gone"


async def test_idle_tenants_are_evicted_after_the_idle_ttl(clock: FakeClock) -> None:
    ledger = InProcessLedger(idle_ttl_ms=60_000)
    budget = budget_over(ledger, clock)
    await budget.reserve("idle", "c", "echo", Usage(input_tokens=1))
    clock.advance(30_000)
    await budget.reserve("active", "c", "echo", Usage(input_tokens=1))
    clock.advance(30_000)
    await budget.status("active")
    assert len(ledger) == 1, "the tenant idle for 60 s is gone, the one seen 30 s ago stays"


async def test_evicting_a_tenant_returns_its_open_holds_to_the_global_pool(clock: FakeClock) -> None:
    ledger = InProcessLedger(max_users=1)
    budget = budget_over(ledger, clock)
    await budget.set_limits(LimitTarget.GLOBAL, "", [TOTAL_NONE])
    rid = (await budget.reserve("first", "c", "echo", Usage(input_tokens=100))).outcome.reservation.reservation_id
    # Admitting "second" evicts "first" before the check, so first's 100 no longer count.
    await budget.reserve("second", "c", "echo", Usage(input_tokens=100))
    states = (await budget.status("second")).snapshot.limits
    assert [(s.applies_to.value, s.reserved) for s in states] == [("global", 100)]
    with pytest.raises(NotFound):
        await budget.commit("first", rid, Usage(input_tokens=100))


async def test_overrides_and_global_usage_survive_eviction(clock: FakeClock) -> None:
    ledger = InProcessLedger(max_users=1)
    budget = budget_over(ledger, clock)
    await budget.set_limits(LimitTarget.USER, "vip", [Limit(Dimension.TOTAL_TOKENS, Window.NONE, 5)])
    await budget.set_limits(LimitTarget.GLOBAL, "", [Limit(Dimension.TOTAL_TOKENS, Window.NONE, 1_000)])
    rid = (await budget.reserve("vip", "c", "echo", Usage(input_tokens=5))).outcome.reservation.reservation_id
    await budget.commit("vip", rid, Usage(input_tokens=5))
    await budget.reserve("other", "c", "echo", Usage(input_tokens=1))  # evicts vip
    with pytest.raises(ResourceExhausted):
        await budget.reserve("vip", "c2", "echo", Usage(input_tokens=6))
    states = (await budget.status("vip")).snapshot.limits
    assert [(s.applies_to.value, s.committed) for s in states] == [("global", 5), ("user", 0)]


async def test_zero_disables_both_bounds(clock: FakeClock) -> None:
    ledger = InProcessLedger(max_users=0, idle_ttl_ms=0)
    budget = budget_over(ledger, clock)
    for n in range(50):
        await budget.reserve(f"t{n}", "c", "echo", Usage(input_tokens=1))
    clock.advance(365 * 86_400_000)
    await budget.status("t0")
    assert len(ledger) == 50
    assert ledger.evicted == 0


async def test_settled_reservations_are_kept_only_for_the_retention(clock: FakeClock) -> None:
    ledger = InProcessLedger(retention_ms=10_000, max_kept_per_user=5)
    budget = budget_over(ledger, clock)
    rid = (await budget.reserve("alice", "c0", "echo", Usage(input_tokens=1))).outcome.reservation.reservation_id
    await budget.commit("alice", rid, Usage(input_tokens=1))
    clock.advance(9_999)
    assert (await budget.commit("alice", rid, Usage(input_tokens=1))).outcome.replayed
    clock.advance(1)
    await budget.reserve("alice", "c1", "echo", Usage(input_tokens=1))
    with pytest.raises(NotFound):
        await budget.commit("alice", rid, Usage(input_tokens=1))
    for n in range(2, 12):
        rid = (await budget.reserve("alice", f"c{n}", "echo", Usage(input_tokens=1))).outcome.reservation.reservation_id
        await budget.commit("alice", rid, Usage(input_tokens=1))
    state = ledger._tenants["alice"]
    assert state.by_id is not None
    assert len(state.by_id) <= 5, "at most max_kept_per_user records per tenant"
