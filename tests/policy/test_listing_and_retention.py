"""ListApprovals paging and approval retention, on every policy store (SQLite and real Postgres)."""

from __future__ import annotations

import dataclasses

import pytest

from loomflow import retention
from loomflow.kernel.errors import InvalidArgument
from loomflow.policy.listing import ApprovalListing, list_page
from loomflow.policy.models import ApprovalStatus
from loomflow.policy.store import PolicyStore
from tests.policy.conftest import START_MS
from tests.policy.test_store_conformance import approval
from tests.support.clock import FakeClock


async def seed(store: PolicyStore, tenant: str, count: int, *, step: int = 1000, settled: bool = False) -> None:
    """``count`` approvals of the tenant, ``step`` ms apart; denied (settled) or pending."""
    for i in range(count):
        item = approval(tenant, f"{tenant}-{i:03d}", created=START_MS + i * step)
        if settled:
            item = dataclasses.replace(
                item, status=ApprovalStatus.DENIED, resolved_at=START_MS + 1, resolved_by="operator:x"
            )
        await store.insert_approval(item)


async def all_pages(store: PolicyStore, listing: ApprovalListing) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    while True:
        page = await list_page(store, listing, token)
        pages.append([a.id for a in page.approvals])
        token = page.next_page_token
        if not token:
            return pages


async def test_pages_walk_every_approval_once_newest_first_without_other_tenants(
    store: PolicyStore, unique: str
) -> None:
    alice, bob = f"alice-{unique}", f"bob-{unique}"
    await seed(store, alice, 7)
    await seed(store, bob, 3)
    pages = await all_pages(store, ApprovalListing(alice, page_size=3))
    assert [len(p) for p in pages] == [3, 3, 1]
    flat = [i for p in pages for i in p]
    assert flat == [f"{alice}-{i:03d}" for i in reversed(range(7))], "not newest first, or a row repeated/skipped"


async def test_a_page_token_resumes_exactly_even_when_approvals_arrive_between_pages(
    store: PolicyStore, unique: str
) -> None:
    tenant = f"t-{unique}"
    await seed(store, tenant, 4)
    listing = ApprovalListing(tenant, page_size=2)
    first = await list_page(store, listing, "")
    await store.insert_approval(approval(tenant, "newest", created=START_MS + 99_000))
    second = await list_page(store, listing, first.next_page_token)
    assert [a.id for a in second.approvals] == [f"{tenant}-001", f"{tenant}-000"]


async def test_filters_by_status_tool_and_time_and_all_tenants(store: PolicyStore, unique: str) -> None:
    alice, bob = f"alice-{unique}", f"bob-{unique}"
    await seed(store, alice, 4)
    await seed(store, bob, 2, settled=True)
    await store.insert_approval(approval(alice, "shell-1", created=START_MS + 500, tool_name="shell"))
    denied = ApprovalListing(None, statuses=frozenset({ApprovalStatus.DENIED}))
    assert {a.id for a in (await list_page(store, denied, "")).approvals} >= {f"{bob}-000", f"{bob}-001"}
    assert all(a.status is ApprovalStatus.DENIED for a in (await list_page(store, denied, "")).approvals)
    shell = ApprovalListing(alice, tool_name="shell")
    assert [a.id for a in (await list_page(store, shell, "")).approvals] == ["shell-1"]
    window = ApprovalListing(alice, created_from=START_MS + 1000, created_to=START_MS + 3000)
    assert [a.id for a in (await list_page(store, window, "")).approvals] == [f"{alice}-002", f"{alice}-001"]


async def test_a_token_for_other_filters_or_a_forged_one_is_invalid_argument(store: PolicyStore, unique: str) -> None:
    tenant = f"t-{unique}"
    await seed(store, tenant, 3)
    first = await list_page(store, ApprovalListing(tenant, page_size=1), "")
    with pytest.raises(InvalidArgument) as other:
        await list_page(store, ApprovalListing(tenant, page_size=1, tool_name="shell"), first.next_page_token)
    with pytest.raises(InvalidArgument) as forged:
        await list_page(store, ApprovalListing(tenant), "not-a-token!")
    assert other.value.violations[0].field == forged.value.violations[0].field == "page_token"
    with pytest.raises(InvalidArgument) as backwards:
        await list_page(store, ApprovalListing(tenant, created_from=START_MS + 5, created_to=START_MS), "")
    assert backwards.value.violations[0].field == "created_to"


# -- retention ------------------------------------------------------------------------------


def sweeper(store: PolicyStore, policy: retention.Retention, clock: FakeClock, **settings: int) -> retention.Sweeper:
    kind = retention.SweptKind(
        "policy_approvals",
        policy,
        store.tenants_with_settled_approvals_before,
        store.delete_settled_approvals_before,
    )
    return retention.Sweeper("policy", [kind], retention.Settings(**settings), clock=clock)  # type: ignore[arg-type]


async def ids(store: PolicyStore, tenant: str) -> set[str]:
    return {a.id for a in await store.list_approvals(ApprovalListing(tenant, page_size=1000))}


async def test_retention_deletes_only_settled_approvals_past_the_tenants_limit(
    store: PolicyStore, unique: str, clock: FakeClock
) -> None:
    alice, bob, carol = f"alice-{unique}", f"bob-{unique}", f"carol-{unique}"
    for tenant in (alice, bob, carol):
        await seed(store, tenant, 3, settled=True)
        await store.insert_approval(approval(tenant, f"{tenant}-pending", ttl=10**12))
    clock.now_ms = START_MS + 10 * retention.DAY_MS
    # Default 7 days; bob keeps his 30 days; carol keeps hers forever.
    policy = retention.Retention(7 * retention.DAY_MS, {bob: 30 * retention.DAY_MS, carol: 0})
    removed = await sweeper(store, policy, clock).sweep_once()
    assert removed == {"policy_approvals": 3}
    assert await ids(store, alice) == {f"{alice}-pending"}, "settled approval kept or pending one lost"
    assert len(await ids(store, bob)) == 4, "bob's longer override was not honoured"
    assert len(await ids(store, carol)) == 4, "carol's keep-forever override was not honoured"


async def test_a_tenant_with_a_huge_pile_does_not_starve_the_others(
    store: PolicyStore, unique: str, clock: FakeClock
) -> None:
    big, small = f"a-big-{unique}", f"b-small-{unique}"
    await seed(store, big, 25, step=1, settled=True)
    await seed(store, small, 2, step=1, settled=True)
    clock.now_ms = START_MS + 2 * retention.DAY_MS
    sweep = sweeper(store, retention.Retention(retention.DAY_MS, {}), clock, batch_rows=10)
    await sweep.sweep_once()
    assert await ids(store, small) == set(), "the small tenant waited behind the big one"
    assert len(await ids(store, big)) == 15, "one pass deleted more than batch_rows of one tenant"
    await sweep.sweep_once()
    await sweep.sweep_once()
    assert await ids(store, big) == set()


async def test_overrides_alone_sweep_only_the_named_tenants(store: PolicyStore, unique: str, clock: FakeClock) -> None:
    named, other = f"named-{unique}", f"other-{unique}"
    await seed(store, named, 2, settled=True)
    await seed(store, other, 2, settled=True)
    clock.now_ms = START_MS + 5 * retention.DAY_MS
    await sweeper(store, retention.Retention(0, {named: retention.DAY_MS}), clock).sweep_once()
    assert await ids(store, named) == set()
    assert len(await ids(store, other)) == 2, "keep-forever by default was not kept"


def test_keep_forever_by_default_builds_no_sweep(store: PolicyStore, clock: FakeClock) -> None:
    assert sweeper(store, retention.Retention(), clock).kinds == []


async def test_a_failing_store_counts_an_error_and_the_next_pass_retries(
    store: PolicyStore, unique: str, clock: FakeClock
) -> None:
    tenant = f"t-{unique}"
    await seed(store, tenant, 1, settled=True)
    clock.now_ms = START_MS + 2 * retention.DAY_MS
    sweep = sweeper(store, retention.Retention(retention.DAY_MS, {}), clock)
    real = sweep.kinds[0].delete_before

    async def broken(tenant: str, cutoff: int, limit: int) -> int:
        raise ConnectionError("database went away")

    sweep.kinds[0] = dataclasses.replace(sweep.kinds[0], delete_before=broken)
    assert await sweep.sweep_once() == {}
    sweep.kinds[0] = dataclasses.replace(sweep.kinds[0], delete_before=real)
    assert await sweep.sweep_once() == {"policy_approvals": 1}
