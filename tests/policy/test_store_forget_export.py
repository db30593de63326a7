"""Policy's Forget and Export, on every policy store (the conformance suite's ``store`` fixture).

What a Forget must erase: the tenant's own policy, every approval with its arguments,
edits and notes, and every remembered answer; nothing of any other tenant; and a write
racing the erase must not bring the tenant's data back.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from loomflow.kernel.errors import Aborted
from loomflow.kernel.tenancy import ANONYMOUS_SENTINEL
from loomflow.policy.models import ApprovalStatus, Decision, ForgetReceipt, Resolution, ResolutionInput
from loomflow.policy.store import PolicyStore
from tests.policy.conftest import START_MS
from tests.policy.test_store_conformance import POLICY, approval

REMEMBER = ResolutionInput(Resolution.APPROVE, "operator:oncall", {"path": "/tmp/edited"}, remember=True, note="ok")


async def seed(store: PolicyStore, tenant: str) -> None:
    """A policy, one resolved approval whose answer is remembered, and one still pending."""
    await store.put_policy(tenant, POLICY)
    await store.insert_approval(approval(tenant, f"apr_{tenant}_1"))
    await store.resolve_approval(tenant, f"apr_{tenant}_1", REMEMBER, START_MS + 10, START_MS + 60_000)
    await store.insert_approval(approval(tenant, f"apr_{tenant}_2", created=START_MS + 20))


async def test_forget_erases_policy_approvals_and_remembered_answers_and_nothing_of_other_tenants(
    store: PolicyStore, unique: str
) -> None:
    alice = f"alice-{unique}"
    # Neighbours whose ids share alice's prefix, and the anonymous partition, must survive.
    neighbours = [f"alice-{unique}x", f"{alice}-2", ANONYMOUS_SENTINEL]
    for tenant in (alice, *neighbours):
        await seed(store, tenant)
    before = {tenant: await store.export(tenant) for tenant in neighbours}

    receipt = await store.forget(alice, START_MS + 1_000)

    assert receipt == ForgetReceipt(
        policy_removed=True, approvals_deleted=2, pending_approvals_deleted=1, remembered_deleted=1
    )
    assert await store.get_policy(alice) is None, "the forgotten tenant's own policy survived"
    assert await store.get_approval(alice, f"apr_{alice}_1") is None, "an approval (with its arguments) survived"
    assert await store.remembered(alice, "run-1", "delete_file", START_MS + 100) is None
    assert await store.pending_approvals(alice) == []
    exported = await store.export(alice)
    assert (exported.policy, exported.approvals, exported.remembered) == (None, (), ())
    for tenant in neighbours:
        assert await store.export(tenant) == before[tenant], f"Forget of {alice!r} touched {tenant!r}"


async def test_forget_is_idempotent(store: PolicyStore, unique: str) -> None:
    tenant = f"bob-{unique}"
    await seed(store, tenant)
    await store.forget(tenant, START_MS + 1_000)
    assert await store.forget(tenant, START_MS + 2_000) == ForgetReceipt()
    assert await store.forget(f"never-{unique}", START_MS) == ForgetReceipt()


async def test_export_holds_policy_approvals_with_arguments_and_remembered_answers(
    store: PolicyStore, unique: str
) -> None:
    tenant = f"carol-{unique}"
    await seed(store, tenant)
    exported = await store.export(tenant)
    assert exported.policy is not None
    assert exported.policy.rules == POLICY.rules
    assert [a.id for a in exported.approvals] == [f"apr_{tenant}_1", f"apr_{tenant}_2"], "oldest first"
    first = exported.approvals[0]
    assert first.arguments == approval(tenant, "x").arguments
    assert first.status is ApprovalStatus.APPROVED
    assert (first.edited_arguments, first.note) == ({"path": "/tmp/edited"}, "ok")
    assert [(r.run_id, r.tool_name, r.approval_id, r.decision) for r in exported.remembered] == [
        ("run-1", "delete_file", f"apr_{tenant}_1", Decision.ALLOW)
    ]


async def test_an_approval_requested_before_the_forget_cannot_be_stored_after_it(
    store: PolicyStore, unique: str
) -> None:
    tenant = f"dave-{unique}"
    await store.forget(tenant, START_MS + 1_000)
    with pytest.raises(Aborted):
        await store.insert_approval(approval(tenant, "apr_late", created=START_MS + 999))
    assert await store.get_approval(tenant, "apr_late") is None
    # A request that starts after the erase is new data, and is stored.
    assert await store.insert_approval(approval(tenant, "apr_new", created=START_MS + 1_000))
    assert await store.get_approval(tenant, "apr_new") is not None
    # Another tenant's requests never meet this tombstone.
    assert await store.insert_approval(approval(f"other-{unique}", "apr_x", created=START_MS))


async def test_requests_racing_the_forget_leave_no_approval_behind(store: PolicyStore, unique: str) -> None:
    tenant = f"erin-{unique}"

    async def request(n: int) -> None:
        # Every request started before the Forget's instant: each is either erased or refused.
        with contextlib.suppress(Aborted):
            await store.insert_approval(approval(tenant, f"apr_race_{n}", created=START_MS + n), max_pending=1000)

    racers = [asyncio.create_task(request(n)) for n in range(60)]
    await asyncio.sleep(0)
    await store.forget(tenant, START_MS + 10_000)
    await asyncio.gather(*racers)
    assert (await store.export(tenant)).approvals == (), "an approval racing the Forget survived it"


async def test_the_forget_is_a_change_every_replica_cache_sees(store: PolicyStore, unique: str) -> None:
    tenant = f"frank-{unique}"
    await store.put_policy(tenant, POLICY)
    seen = await store.policy_version()
    await store.forget(tenant, START_MS)
    assert [key for key, _ in await store.policy_changes(seen)] == [tenant], (
        "the erase of a policy must appear in the change feed, or other replicas keep it cached"
    )
    # Forgetting a tenant without a policy of its own changes nothing a cache holds.
    seen = await store.policy_version()
    await store.forget(tenant, START_MS + 1)
    assert await store.policy_changes(seen) == []
    # A policy put afterwards is the tenant's again.
    await store.put_policy(tenant, POLICY)
    assert await store.get_policy(tenant) is not None
