"""The budget ledger's contract, checked against every backend (in-process, real Redis, real Postgres).

Each test gets a fresh, isolated ledger behind a :class:`Budget` (pricing included)
and a clock it moves by hand, so windows and expiry are crossed without sleeping.
"""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

import pytest

from loomflow.budget.core import Budget
from loomflow.budget.models import Dimension, Limit, LimitTarget, Usage, Window
from loomflow.kernel.errors import InvalidArgument, NotFound, ResourceExhausted, Unavailable
from tests.budget.conftest import Backend
from tests.budget.proxy import CuttableProxy
from tests.support.clock import FakeClock

TOTAL = Dimension.TOTAL_TOKENS
COST = Dimension.COST_MICROS
WALL = Dimension.WALL_CLOCK_MS


def usage(input_tokens: int = 0, output_tokens: int = 0, **more: int) -> Usage:
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens, **more)


async def user_limits(budget: Budget, *limits: Limit, tenant: str = "") -> None:
    target = LimitTarget.USER if tenant else LimitTarget.DEFAULT_USER
    await budget.set_limits(target, tenant, list(limits))


async def used(budget: Budget, tenant: str, dimension: Dimension = TOTAL, applies_to: str = "user") -> tuple[int, int]:
    """(committed, reserved) of the tenant's limit on ``dimension``."""
    status = await budget.status(tenant)
    for state in status.snapshot.limits:
        if state.limit.dimension is dimension and state.applies_to.value == applies_to:
            return state.committed, state.reserved
    raise AssertionError(f"no {applies_to} limit on {dimension.label} in {status.snapshot.limits}")


async def test_reserve_holds_the_estimate_and_commit_books_the_actual(budget: Budget) -> None:
    await user_limits(budget, Limit(TOTAL, Window.NONE, 1_000))
    held = await budget.reserve("alice", "call-1", "claude-sonnet-4-5", usage(300, 100))
    assert held.outcome.reservation.held.total_tokens == 400
    assert held.outcome.reservation.held.priced_as == "claude-sonnet-4"
    assert await used(budget, "alice") == (0, 400)

    committed = await budget.commit("alice", held.outcome.reservation.reservation_id, usage(250, 50))
    charge = committed.outcome.charged
    assert not committed.outcome.replayed
    assert (charge.input_tokens, charge.output_tokens, charge.total_tokens) == (250, 50, 300)
    assert charge.cost_micros == 250 * 3 + 50 * 15, "sonnet is 3 / 15 USD per million tokens = micro-USD per token"
    assert await used(budget, "alice") == (300, 0), "the commit replaces the hold with the actual usage"
    assert (await budget.status("alice")).snapshot.total.stored == charge.stored


async def test_thousand_concurrent_reservations_never_overshoot_one_users_limit(budget: Budget) -> None:
    limit = 12_345
    await user_limits(budget, Limit(TOTAL, Window.DAILY, limit))

    async def attempt(n: int) -> str:
        try:
            result = await budget.reserve("racer", f"call-{n}", "echo", usage(60, 40))
        except ResourceExhausted as refused:
            return refused.limit
        return result.outcome.reservation.reservation_id

    answers = await asyncio.gather(*(attempt(n) for n in range(1000)))
    granted = [rid for rid in answers if rid.startswith("r1.")]
    assert set(answers) - set(granted) == {"user:total_tokens/daily"}, "every refusal names the user's daily limit"
    assert len(granted) == limit // 100, f"{len(granted)} reservations of 100 tokens granted under a {limit} limit"
    assert await used(budget, "racer") == (0, len(granted) * 100)

    await asyncio.gather(*(budget.commit("racer", rid, usage(60, 40)) for rid in granted))
    committed, reserved = await used(budget, "racer")
    assert committed == len(granted) * 100 <= limit
    assert reserved == 0
    with pytest.raises(ResourceExhausted):
        await budget.reserve("racer", "one-more", "echo", usage(60, 40))


async def test_retried_reserve_returns_the_original_and_holds_once(budget: Budget) -> None:
    await user_limits(budget, Limit(TOTAL, Window.NONE, 1_000))
    first = await budget.reserve("alice", "call-1", "echo", usage(100))
    again = await budget.reserve("alice", "call-1", "echo", usage(900))
    assert again.outcome.replayed
    assert not first.outcome.replayed
    assert again.outcome.reservation == first.outcome.reservation, "a retry answers the original reservation"
    assert await used(budget, "alice") == (0, 100)

    racing = await asyncio.gather(*(budget.reserve("alice", "call-2", "echo", usage(100)) for _ in range(20)))
    assert len({r.outcome.reservation.reservation_id for r in racing}) == 1
    assert sum(not r.outcome.replayed for r in racing) == 1, "exactly one of the racing retries holds"
    assert await used(budget, "alice") == (0, 200)


async def test_retried_commit_returns_the_original_charge_and_books_once(budget: Budget) -> None:
    await user_limits(budget, Limit(TOTAL, Window.NONE, 10_000))
    rid = (await budget.reserve("alice", "call-1", "gpt-4o", usage(1_000, 500))).outcome.reservation.reservation_id
    first = await budget.commit("alice", rid, usage(800, 400, wall_clock_ms=1_500))
    again = await budget.commit("alice", rid, usage(9_000, 1, wall_clock_ms=7))
    assert again.outcome.replayed
    assert again.outcome.charged == first.outcome.charged

    rid2 = (await budget.reserve("alice", "call-2", "gpt-4o", usage(10))).outcome.reservation.reservation_id
    racing = await asyncio.gather(*(budget.commit("alice", rid2, usage(10, 10)) for _ in range(20)))
    assert sum(not r.outcome.replayed for r in racing) == 1, "exactly one racing commit books"
    assert await used(budget, "alice") == (1_200 + 20, 0)
    total = (await budget.status("alice")).snapshot.total
    assert total.cost_micros == first.outcome.charged.cost_micros + racing[0].outcome.charged.cost_micros


async def test_per_user_totals_equal_the_sum_of_committed_calls_to_the_token_and_cent(budget: Budget) -> None:
    models = ["claude-3-5-haiku-latest", "gpt-4o-mini", "gpt-4.1-nano", "echo", "claude-opus-4-1"]
    expected: dict[str, list[int]] = {}
    for n in range(60):
        tenant = f"user-{n % 4}"
        actual = usage(1_000 + 37 * n, 11 * n, cached_input_tokens=7 * n, cache_write_tokens=n, wall_clock_ms=n + 1)
        rid = (await budget.reserve(tenant, f"c{n}", models[n % 5], actual)).outcome.reservation.reservation_id
        charge = (await budget.commit(tenant, rid, actual)).outcome.charged
        await budget.commit(tenant, rid, actual)  # a retry must not count twice
        sums = expected.setdefault(tenant, [0] * 6)
        for index, value in enumerate(charge.stored):
            sums[index] += value
    for tenant, sums in expected.items():
        total = (await budget.status(tenant)).snapshot.total
        assert list(total.stored) == sums, f"{tenant}: ledger total {total} != sum of its charges {sums}"


async def test_cached_tokens_are_priced_with_the_cache_multipliers(budget: Budget) -> None:
    rid = (await budget.reserve("alice", "c", "claude-sonnet-4", usage(1))).outcome.reservation.reservation_id
    charge = (
        await budget.commit("alice", rid, usage(1_000_000, 0, cached_input_tokens=600_000, cache_write_tokens=100_000))
    ).outcome.charged
    # 300k uncached x 3 + 600k cached x 0.3 + 100k written x 3.75 micro-USD
    assert charge.cost_micros == 900_000 + 180_000 + 375_000
    assert (charge.cached_input_tokens, charge.cache_write_tokens) == (600_000, 100_000)


async def test_call_ids_are_scoped_per_tenant(budget: Budget) -> None:
    alice = await budget.reserve("alice", "x", "echo", usage(10))
    bob = await budget.reserve("bob", "x", "echo", usage(20))
    assert not bob.outcome.replayed, "bob's call_id 'x' is not alice's"
    assert alice.outcome.reservation.reservation_id != bob.outcome.reservation.reservation_id
    assert bob.outcome.reservation.held.total_tokens == 20


@pytest.mark.parametrize("tenant_pair", [("a:b", "a"), ("a", "b:a"), ("*", "{x}"), ("{x}:1", "{x}"), ("a\\b", "a")])
async def test_tenants_whose_ids_share_delimiters_stay_apart(budget: Budget, tenant_pair: tuple[str, str]) -> None:
    first, second = tenant_pair
    await user_limits(budget, Limit(TOTAL, Window.NONE, 100))
    one = await budget.reserve(first, "c:1", "echo", usage(100))
    two = await budget.reserve(second, "c:1", "echo", usage(100))
    assert not two.outcome.replayed
    await budget.commit(first, one.outcome.reservation.reservation_id, usage(100))
    assert await used(budget, first) == (100, 0)
    assert await used(budget, second) == (0, 100)
    with pytest.raises(NotFound):
        await budget.commit(second, one.outcome.reservation.reservation_id, usage(1))


async def test_another_tenants_reservation_id_is_not_found(budget: Budget) -> None:
    rid = (await budget.reserve("alice", "c", "echo", usage(10))).outcome.reservation.reservation_id
    with pytest.raises(NotFound):
        await budget.commit("bob", rid, usage(10))
    with pytest.raises(NotFound):
        await budget.release("bob", rid)
    for forged in ["nope", rid[:-1] + ("x" if rid[-1] != "x" else "y"), rid + ".", "r1." + "A" * 22 + ".1."]:
        with pytest.raises(NotFound):
            await budget.commit("alice", forged, usage(1))
    assert (await budget.status("bob")).snapshot.total.total_tokens == 0
    assert (await budget.release("alice", rid)) is True


async def test_release_returns_the_hold_and_is_idempotent(budget: Budget) -> None:
    await user_limits(budget, Limit(TOTAL, Window.NONE, 100))
    rid = (await budget.reserve("alice", "c1", "echo", usage(100))).outcome.reservation.reservation_id
    with pytest.raises(ResourceExhausted):
        await budget.reserve("alice", "c2", "echo", usage(1))
    assert await budget.release("alice", rid) is True
    assert await budget.release("alice", rid) is False
    assert await used(budget, "alice") == (0, 0)
    await budget.reserve("alice", "c2", "echo", usage(100))


async def test_commit_after_release_still_books_the_tokens_that_were_spent(budget: Budget) -> None:
    await user_limits(budget, Limit(TOTAL, Window.NONE, 1_000))
    rid = (await budget.reserve("alice", "c1", "echo", usage(100))).outcome.reservation.reservation_id
    await budget.release("alice", rid)
    late = await budget.commit("alice", rid, usage(70))
    assert not late.outcome.replayed
    assert await used(budget, "alice") == (70, 0)
    assert await budget.release("alice", rid) is False, "a committed reservation cannot be released"


async def test_global_and_per_user_limits_both_apply(budget: Budget) -> None:
    await budget.set_limits(LimitTarget.GLOBAL, "", [Limit(TOTAL, Window.NONE, 500)])
    await user_limits(budget, Limit(TOTAL, Window.NONE, 300))
    await user_limits(budget, Limit(TOTAL, Window.NONE, 50), tenant="carol")

    await budget.reserve("alice", "a1", "echo", usage(300))
    with pytest.raises(ResourceExhausted) as refused:
        await budget.reserve("alice", "a2", "echo", usage(1))
    assert refused.value.limit == "user:total_tokens/none"

    with pytest.raises(ResourceExhausted) as refused:
        await budget.reserve("carol", "c1", "echo", usage(60))
    assert refused.value.limit == "user:total_tokens/none", "carol's override (50) replaces the default (300)"

    await budget.reserve("bob", "b1", "echo", usage(200))
    with pytest.raises(ResourceExhausted) as refused:
        await budget.reserve("carol", "c2", "echo", usage(1))
    assert refused.value.limit == "global:total_tokens/none", "bob and alice used up the global 500"
    assert await used(budget, "bob", applies_to="global") == (0, 500)

    await user_limits(budget, tenant="carol")  # removing the override falls back to the default
    assert [s.limit.max for s in (await budget.status("carol")).snapshot.limits] == [500, 300]


async def test_daily_window_rolls_over_at_utc_midnight(budget: Budget, clock: FakeClock) -> None:
    await user_limits(budget, Limit(TOTAL, Window.DAILY, 100), Limit(TOTAL, Window.NONE, 150))
    clock.advance(59_999)  # 23:59:59.999 on the last day of the month
    rid = (await budget.reserve("alice", "c1", "echo", usage(100))).outcome.reservation.reservation_id
    await budget.commit("alice", rid, usage(100))
    with pytest.raises(ResourceExhausted) as refused:
        await budget.reserve("alice", "c2", "echo", usage(1))
    assert refused.value.limit == "user:total_tokens/daily"

    clock.advance(1)  # 00:00:00.000: a new day (and month) begins
    rid = (await budget.reserve("alice", "c2", "echo", usage(50))).outcome.reservation.reservation_id
    await budget.commit("alice", rid, usage(50))
    status = await budget.status("alice")
    by_window = {s.limit.window: s.committed for s in status.snapshot.limits}
    assert by_window == {Window.DAILY: 50, Window.NONE: 150}, "the all-time window keeps counting"
    with pytest.raises(ResourceExhausted) as refused:
        await budget.reserve("alice", "c3", "echo", usage(1))
    assert refused.value.limit == "user:total_tokens/none"


async def test_monthly_window_rolls_over_at_the_month_boundary_not_the_day(budget: Budget, clock: FakeClock) -> None:
    await budget.set_limits(LimitTarget.GLOBAL, "", [Limit(COST, Window.MONTHLY, 1_000)])
    clock.advance(120_000)  # 2026-04-01 00:01
    rid = (await budget.reserve("alice", "c1", "gpt-4o", usage(400))).outcome.reservation.reservation_id
    await budget.commit("alice", rid, usage(400))  # 400 x 2.5 = 1000 micro-USD
    clock.advance(29 * 86_400_000)  # 2026-04-30 00:01, same month
    with pytest.raises(ResourceExhausted) as refused:
        await budget.reserve("bob", "c1", "gpt-4o", usage(1))
    assert refused.value.limit == "global:cost_micros/monthly"
    clock.advance(86_400_000)  # 2026-05-01 00:01
    await budget.reserve("bob", "c1", "gpt-4o", usage(1))


async def test_expired_reservations_return_their_capacity(budget: Budget, clock: FakeClock) -> None:
    await user_limits(budget, Limit(TOTAL, Window.NONE, 100))
    rid = (await budget.reserve("alice", "c1", "echo", usage(100), ttl_ms=1_000)).outcome.reservation.reservation_id
    with pytest.raises(ResourceExhausted):
        await budget.reserve("alice", "c2", "echo", usage(1))
    clock.advance(999)
    with pytest.raises(ResourceExhausted):
        await budget.reserve("alice", "c2", "echo", usage(1))
    clock.advance(1)
    assert await used(budget, "alice") == (0, 0), "an abandoned hold stops counting at its expiry"
    await budget.reserve("alice", "c2", "echo", usage(60))
    assert await budget.release("alice", rid) is False, "an expired hold has nothing left to release"
    late = await budget.commit("alice", rid, usage(30))
    assert late.outcome.charged.total_tokens == 30, "the tokens of a late commit were spent: they are booked"
    assert await used(budget, "alice") == (30, 60)


async def test_expiry_of_idle_tenants_holds_frees_the_global_limit(budget: Budget, clock: FakeClock) -> None:
    await budget.set_limits(LimitTarget.GLOBAL, "", [Limit(TOTAL, Window.NONE, 100)])
    for n in range(10):
        await budget.reserve(f"idle-{n}", "c", "echo", usage(10), ttl_ms=5_000)
    with pytest.raises(ResourceExhausted):
        await budget.reserve("busy", "c", "echo", usage(1))
    clock.advance(5_000)
    await budget.reserve("busy", "c", "echo", usage(100))


async def test_soft_warning_once_a_limit_is_80_percent_used(budget: Budget) -> None:
    await user_limits(budget, Limit(TOTAL, Window.NONE, 1_000), Limit(COST, Window.NONE, 1_000_000))
    quiet = await budget.reserve("alice", "c1", "echo", usage(790))
    assert quiet.warnings == []
    loud = await budget.reserve("alice", "c2", "echo", usage(10))
    assert [w.state.limit.dimension for w in loud.warnings] == [TOTAL]
    assert "80%" in loud.warnings[0].message
    committed = await budget.commit("alice", loud.outcome.reservation.reservation_id, usage(10))
    assert [w.state.limit.name for w in committed.warnings] == ["total_tokens/none"]
    assert [w.state.fraction for w in (await budget.status("alice")).warnings] == [0.8]


async def test_a_used_up_limit_refuses_even_a_zero_estimate(budget: Budget) -> None:
    await user_limits(budget, Limit(WALL, Window.DAILY, 1_000))
    rid = (await budget.reserve("alice", "c1", "echo", usage(1))).outcome.reservation.reservation_id
    await budget.commit("alice", rid, usage(1, wall_clock_ms=1_000))
    with pytest.raises(ResourceExhausted) as refused:
        await budget.reserve("alice", "c2", "echo", usage(1))
    assert refused.value.limit == "user:wall_clock_ms/daily"


async def test_wall_clock_is_measured_from_reserve_to_commit_when_not_reported(
    budget: Budget, clock: FakeClock
) -> None:
    rid = (await budget.reserve("alice", "c1", "echo", usage(1))).outcome.reservation.reservation_id
    clock.advance(1_234)
    assert (await budget.commit("alice", rid, usage(1))).outcome.charged.wall_clock_ms == 1_234


async def test_usage_over_the_estimate_is_charged_in_full(budget: Budget) -> None:
    await user_limits(budget, Limit(TOTAL, Window.NONE, 100))
    rid = (await budget.reserve("alice", "c1", "echo", usage(50))).outcome.reservation.reservation_id
    await budget.commit("alice", rid, usage(150))
    assert await used(budget, "alice") == (150, 0)
    with pytest.raises(ResourceExhausted):
        await budget.reserve("alice", "c2", "echo", usage(0))


async def test_a_commit_far_above_its_reservation_is_charged_and_flagged_as_an_overrun(budget: Budget) -> None:
    await user_limits(budget, Limit(TOTAL, Window.NONE, 100))
    rid = (await budget.reserve("alice", "c1", "echo", usage(1))).outcome.reservation.reservation_id
    committed = await budget.commit("alice", rid, usage(1_000_000))
    assert committed.outcome.charged.total_tokens == 1_000_000, "the usage happened: it is charged in full"
    assert await used(budget, "alice") == (1_000_000, 0)
    flagged = {o.dimension: (o.held, o.charged, o.excess) for o in committed.overruns}
    assert flagged[Dimension.INPUT_TOKENS] == (1, 1_000_000, 999_999), f"the overrun is not flagged: {flagged}"
    assert flagged[TOTAL] == (1, 1_000_000, 999_999)
    assert Dimension.OUTPUT_TOKENS not in flagged, "only dimensions above their hold are flagged"
    replay = await budget.commit("alice", rid, usage(1_000_000))
    assert replay.outcome.replayed
    assert replay.overruns == committed.overruns, "a retry answers the same overrun"
    estimate = usage(10, 5, wall_clock_ms=9)
    within = (await budget.reserve("bob", "c1", "echo", estimate)).outcome.reservation.reservation_id
    assert (await budget.commit("bob", within, estimate)).overruns == [], "a commit within its hold flags nothing"
    late = (await budget.reserve("bob", "c2", "echo", estimate)).outcome.reservation.reservation_id
    slow = await budget.commit("bob", late, usage(1, 1, wall_clock_ms=10))
    assert [o.dimension for o in slow.overruns] == [WALL], "time beyond an estimated hold is an overrun too"


async def test_impossible_usages_and_duplicate_limits_are_invalid(budget: Budget) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await budget.reserve("alice", "c1", "echo", usage(10, cached_input_tokens=8, cache_write_tokens=3))
    assert bad.value.violations[0].field == "estimate.cached_input_tokens"
    with pytest.raises(InvalidArgument) as bad:
        await budget.set_limits(LimitTarget.GLOBAL, "", [Limit(TOTAL, Window.NONE, 1), Limit(TOTAL, Window.NONE, 2)])
    assert bad.value.violations[0].field == "limits[1]"


async def test_limits_read_back_as_set(budget: Budget) -> None:
    limits = [Limit(TOTAL, Window.DAILY, 10), Limit(COST, Window.MONTHLY, 20)]
    assert await budget.set_limits(LimitTarget.USER, "alice", limits) == limits
    assert await budget.set_limits(LimitTarget.DEFAULT_USER, "", limits[:1]) == limits[:1]
    assert await budget.set_limits(LimitTarget.USER, "alice", []) == []


async def test_durable_ledgers_keep_everything_committed_across_a_restart(
    durable_backend: Backend, clock: FakeClock
) -> None:
    before = durable_backend.open(clock)
    await before.start()
    try:
        await user_limits(before, Limit(TOTAL, Window.DAILY, 1_000))
        rid = (await before.reserve("alice", "c1", "echo", usage(300))).outcome.reservation.reservation_id
        await before.commit("alice", rid, usage(250))
        open_rid = (await before.reserve("alice", "c2", "echo", usage(100))).outcome.reservation.reservation_id
    finally:
        await before.close()

    after = durable_backend.open(clock)  # a new process: nothing carried over but the store
    await after.start()
    try:
        assert await used(after, "alice") == (250, 100)
        assert (await after.commit("alice", rid, usage(1))).outcome.replayed
        assert (await after.reserve("alice", "c2", "echo", usage(1))).outcome.reservation.reservation_id == open_rid
    finally:
        await after.close()


async def test_store_outage_fails_closed_with_unavailable_and_grants_nothing(
    durable_backend: Backend, clock: FakeClock
) -> None:
    backend = durable_backend
    address = urlsplit(backend.dsn)
    proxy = CuttableProxy(address.hostname or "127.0.0.1", address.port or 0)
    await proxy.start()
    budget = backend.through(proxy.port).open(clock)
    await budget.start()
    try:
        await user_limits(budget, Limit(TOTAL, Window.NONE, 1_000))
        rid = (await budget.reserve("alice", "before", "echo", usage(100))).outcome.reservation.reservation_id

        await proxy.cut()
        for attempt in range(3):
            with pytest.raises(Unavailable):
                await budget.reserve("alice", f"during-{attempt}", "echo", usage(1))
        with pytest.raises(Unavailable):
            await budget.commit("alice", rid, usage(100))
        with pytest.raises(Unavailable):
            await budget.status("alice")

        await proxy.start()  # the store is back, on the same address
        assert await used(budget, "alice") == (0, 100), "nothing was held or booked during the outage"
        retried = await budget.reserve("alice", "during-0", "echo", usage(1))
        assert not retried.outcome.replayed, "the refused call_id was never granted"
    finally:
        await budget.close()
        await proxy.cut()


async def test_unreachable_store_at_start_up_answers_unavailable(durable_backend: Backend, clock: FakeClock) -> None:
    backend = durable_backend
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    budget = backend.through(dead_port).open(clock)
    await budget.start()  # starting must not fail: the service comes up and refuses to grant
    try:
        with pytest.raises(Unavailable):
            await budget.reserve("alice", "c1", "echo", usage(1))
        with pytest.raises(Unavailable):
            await budget.set_limits(LimitTarget.GLOBAL, "", [Limit(TOTAL, Window.NONE, 1)])
    finally:
        await budget.close()


async def test_limits_from_settings_hold_even_when_the_store_was_down_at_start_up(
    durable_backend: Backend, clock: FakeClock
) -> None:
    address = urlsplit(durable_backend.dsn)
    proxy = CuttableProxy(address.hostname or "127.0.0.1", address.port or 0)
    await proxy.start()
    await proxy.cut()  # down before the service starts
    budget = durable_backend.through(proxy.port).open(
        clock, configured_limits={LimitTarget.DEFAULT_USER: [Limit(TOTAL, Window.NONE, 10)]}
    )
    await budget.start()
    try:
        with pytest.raises(Unavailable):
            await budget.reserve("alice", "c1", "echo", usage(11))
        await proxy.start()
        with pytest.raises(ResourceExhausted) as refused:
            await budget.reserve("alice", "c1", "echo", usage(11))
        assert refused.value.limit == "user:total_tokens/none", "the configured limit was written first"
    finally:
        await budget.close()
        await proxy.cut()
