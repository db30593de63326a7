"""One conformance suite for every policy store (SQLite and real Postgres)."""

from __future__ import annotations

import asyncio
import dataclasses

from loomflow.kernel.tenancy import ANONYMOUS_SENTINEL
from loomflow.policy.models import (
    DEFAULT_POLICY_KEY,
    Approval,
    ApprovalStatus,
    Condition,
    Decision,
    Mode,
    Operator,
    Policy,
    Remembered,
    Resolution,
    ResolutionInput,
    Rule,
)
from loomflow.policy.store import PolicyStore
from loomflow.policy.store.codec import arguments_digest
from tests.policy.conftest import START_MS, Backend

POLICY = Policy(
    rules=(
        Rule("no-etc", "*_file", Decision.DENY, (Condition("path", Operator.MATCHES, ("/etc/*", "/boot/*")),), "no"),
        Rule("ask-shell", "shell", Decision.ASK),
        Rule("exists", "x", Decision.ALLOW, (Condition("flag", Operator.EXISTS, ()),)),
    ),
    mode=Mode.ACCEPT_EDITS,
    fallback=Decision.DENY,
)
APPROVE = ResolutionInput(Resolution.APPROVE, "operator:oncall", {"path": "/tmp/edited"}, remember=False, note="ok")
REJECT = ResolutionInput(Resolution.DENY, "service:agent")


def approval(
    tenant: str, approval_id: str, *, created: int = START_MS, ttl: int = 60_000, **fields: object
) -> Approval:
    values: dict[str, object] = {
        "id": approval_id,
        "tenant": tenant,
        "tool_name": "delete_file",
        "arguments": {"path": "/tmp/ß", "nested": {"n": 1.5, "list": [1, "two", None, True]}},
        "decision_id": f"dec_{approval_id}",
        "session_id": "s-1",
        "run_id": "run-1",
        "reason": "destructive",
        "status": ApprovalStatus.PENDING,
        "created_at": created,
        "expires_at": created + ttl,
    }
    values.update(fields)
    return Approval(**values)  # type: ignore[arg-type]


# -- policies -----------------------------------------------------------------


async def test_policies_round_trip_with_growing_versions(store: PolicyStore, unique: str) -> None:
    assert await store.get_policy(f"alice-{unique}") is None
    first = await store.put_policy(f"alice-{unique}", POLICY)
    assert dataclasses.replace(first, version=0) == POLICY
    assert await store.get_policy(f"alice-{unique}") == first
    second = await store.put_policy(f"alice-{unique}", Policy(mode=Mode.PLAN))
    assert second.version > first.version
    assert await store.get_policy(f"alice-{unique}") == second


async def test_the_default_and_the_anonymous_partition_are_keys_like_any_other(store: PolicyStore) -> None:
    default = await store.put_policy(DEFAULT_POLICY_KEY, Policy(fallback=Decision.ASK))
    anonymous = await store.put_policy(ANONYMOUS_SENTINEL, Policy(mode=Mode.PLAN))
    assert await store.get_policy(DEFAULT_POLICY_KEY) == default
    assert await store.get_policy(ANONYMOUS_SENTINEL) == anonymous


async def test_the_change_feed_lists_every_write_after_a_version_in_order(store: PolicyStore) -> None:
    start = await store.policy_version()
    a = await store.put_policy("a", POLICY)
    b = await store.put_policy("b", POLICY)
    a2 = await store.put_policy("a", Policy())
    assert await store.policy_version() == a2.version
    assert await store.policy_changes(start) == [("b", b.version), ("a", a2.version)]
    assert await store.policy_changes(b.version) == [("a", a2.version)]
    assert a.version < b.version < a2.version


async def test_concurrent_policy_writes_get_distinct_versions_and_none_is_skipped(store: PolicyStore) -> None:
    start = await store.policy_version()
    written = await asyncio.gather(*(store.put_policy(f"k{i}", POLICY) for i in range(20)))
    versions = sorted(p.version for p in written)
    assert len(set(versions)) == 20
    assert sorted(v for _, v in await store.policy_changes(start)) == versions


# -- approvals ----------------------------------------------------------------


async def test_approvals_round_trip_every_field(store: PolicyStore, unique: str) -> None:
    created = approval(f"alice-{unique}", f"apr-{unique}")
    await store.insert_approval(created)
    assert await store.get_approval(f"alice-{unique}", f"apr-{unique}") == created


async def test_another_tenants_approval_is_never_returned(store: PolicyStore, unique: str) -> None:
    await store.insert_approval(approval(f"alice-{unique}", f"apr-{unique}"))
    assert await store.get_approval(f"bob-{unique}", f"apr-{unique}") is None
    assert await store.get_approval(ANONYMOUS_SENTINEL, f"apr-{unique}") is None
    now = START_MS + 1
    assert await store.resolve_approval(f"bob-{unique}", f"apr-{unique}", APPROVE, now, None) is None
    assert await store.expire_due(START_MS + 10**9, f"bob-{unique}", f"apr-{unique}") == []
    assert (await store.get_approval(f"alice-{unique}", f"apr-{unique}")).status is ApprovalStatus.PENDING  # type: ignore[union-attr]
    assert all(a.tenant != f"alice-{unique}" for a in await store.pending_approvals(f"bob-{unique}"))


async def test_resolving_records_the_answer_once(store: PolicyStore, unique: str) -> None:
    tenant = f"alice-{unique}"
    await store.insert_approval(approval(tenant, "a1"))
    resolved = await store.resolve_approval(tenant, "a1", APPROVE, START_MS + 5, None)
    assert resolved is not None
    assert (resolved.status, resolved.edited_arguments, resolved.resolved_by, resolved.note, resolved.resolved_at) == (
        ApprovalStatus.APPROVED,
        {"path": "/tmp/edited"},
        "operator:oncall",
        "ok",
        START_MS + 5,
    )
    assert await store.get_approval(tenant, "a1") == resolved
    assert await store.resolve_approval(tenant, "a1", REJECT, START_MS + 6, None) is None
    assert await store.get_approval(tenant, "a1") == resolved


async def test_an_approval_past_its_deadline_cannot_be_resolved(store: PolicyStore, unique: str) -> None:
    tenant = f"alice-{unique}"
    await store.insert_approval(approval(tenant, "late", ttl=100))
    assert await store.resolve_approval(tenant, "late", APPROVE, START_MS + 100, None) is None
    assert (await store.get_approval(tenant, "late")).status is ApprovalStatus.PENDING  # type: ignore[union-attr]


async def test_expiry_takes_only_due_pending_approvals_and_each_exactly_once(store: PolicyStore, unique: str) -> None:
    tenant = f"alice-{unique}"
    await store.insert_approval(approval(tenant, "due", ttl=10))
    await store.insert_approval(approval(tenant, "later", ttl=10_000))
    await store.insert_approval(approval(tenant, "answered", ttl=10))
    await store.resolve_approval(tenant, "answered", REJECT, START_MS + 1, None)

    now = START_MS + 10
    results = await asyncio.gather(*(store.expire_due(now) for _ in range(4)))
    mine = [a for batch in results for a in batch if a.tenant == tenant]
    assert [(a.id, a.status, a.resolved_at) for a in mine] == [("due", ApprovalStatus.EXPIRED, now)]
    assert (await store.get_approval(tenant, "later")).status is ApprovalStatus.PENDING  # type: ignore[union-attr]
    assert (await store.get_approval(tenant, "answered")).status is ApprovalStatus.DENIED  # type: ignore[union-attr]


async def test_expiring_one_approval_leaves_the_others(store: PolicyStore, unique: str) -> None:
    tenant = f"alice-{unique}"
    await store.insert_approval(approval(tenant, "one", ttl=10))
    await store.insert_approval(approval(tenant, "two", ttl=10))
    expired = await store.expire_due(START_MS + 20, tenant, "one")
    assert [a.id for a in expired] == ["one"]
    assert (await store.get_approval(tenant, "two")).status is ApprovalStatus.PENDING  # type: ignore[union-attr]
    assert await store.expire_due(START_MS + 20, tenant, "one") == []


async def test_pending_approvals_by_tenant_and_for_everyone_oldest_first(store: PolicyStore, unique: str) -> None:
    alice, bob = f"alice-{unique}", f"bob-{unique}"
    await store.insert_approval(approval(alice, "a2", created=START_MS + 2))
    await store.insert_approval(approval(bob, "b1", created=START_MS + 1))
    await store.insert_approval(approval(alice, "a1", created=START_MS))
    await store.insert_approval(approval(alice, "done", created=START_MS))
    await store.resolve_approval(alice, "done", REJECT, START_MS + 3, None)
    assert [a.id for a in await store.pending_approvals(alice)] == ["a1", "a2"]
    everyone = [a.id for a in await store.pending_approvals(None) if a.tenant in (alice, bob)]
    assert everyone == ["a1", "b1", "a2"]


async def test_a_remembered_answer_is_keyed_by_tenant_run_and_tool_and_lapses(store: PolicyStore, unique: str) -> None:
    tenant = f"alice-{unique}"
    await store.insert_approval(approval(tenant, "r1"))
    until = START_MS + 1000
    await store.resolve_approval(tenant, "r1", dataclasses.replace(APPROVE, remember=True), START_MS + 1, until)
    assert await store.remembered(tenant, "run-1", "delete_file", START_MS + 2) == Remembered("r1", Decision.ALLOW)
    assert await store.remembered(tenant, "run-2", "delete_file", START_MS + 2) is None
    assert await store.remembered(tenant, "run-1", "shell", START_MS + 2) is None
    assert await store.remembered(f"bob-{unique}", "run-1", "delete_file", START_MS + 2) is None
    assert await store.remembered(tenant, "run-1", "delete_file", until) is None
    assert await store.purge(until) >= 1
    assert await store.remembered(tenant, "run-1", "delete_file", START_MS + 2) is None


async def test_a_remembered_denial_is_a_deny(store: PolicyStore, unique: str) -> None:
    tenant = f"alice-{unique}"
    await store.insert_approval(approval(tenant, "r2"))
    denial = dataclasses.replace(REJECT, remember=True)
    await store.resolve_approval(tenant, "r2", denial, START_MS + 1, START_MS + 1000)
    assert await store.remembered(tenant, "run-1", "delete_file", START_MS + 2) == Remembered("r2", Decision.DENY)


async def test_everything_survives_closing_and_reopening(backend: Backend, unique: str) -> None:
    tenant = f"alice-{unique}"
    first = backend.open()
    await first.start()
    stored = await first.put_policy(tenant, POLICY)
    await first.insert_approval(approval(tenant, "kept"))
    await first.insert_approval(approval(tenant, "answered"))
    answered = await first.resolve_approval(tenant, "answered", APPROVE, START_MS + 1, None)
    await first.close()

    second = backend.open()
    await second.start()  # migrations run again and must leave the data alone
    try:
        assert await second.get_policy(tenant) == stored
        assert await second.get_approval(tenant, "kept") == approval(tenant, "kept")
        assert await second.get_approval(tenant, "answered") == answered
    finally:
        await second.close()


# -- single use (issue 19, item 1) and the pending cap (item 9) ------------------------------


ARGUMENTS = {"path": "/tmp/ß", "nested": {"n": 1.5, "list": [1, "two", None, True]}}
DIGEST = arguments_digest(ARGUMENTS)


async def approved(store: PolicyStore, tenant: str, approval_id: str, *, deferred: bool = False) -> Approval:
    await store.insert_approval(approval(tenant, approval_id, arguments_sha256=DIGEST, deferred=deferred))
    resolved = await store.resolve_approval(tenant, approval_id, APPROVE, START_MS + 1, None)
    assert resolved is not None
    return resolved


async def test_an_approval_is_consumed_once_for_its_tool_arguments_and_run(store: PolicyStore, unique: str) -> None:
    tenant = f"alice-{unique}"
    await approved(store, tenant, "once")
    used = await store.consume_approval(tenant, "once", "delete_file", DIGEST, "run-1", START_MS + 2)
    assert used is not None
    assert (used.consumed_at, used.consumed_run_id) == (START_MS + 2, "run-1")
    assert await store.get_approval(tenant, "once") == used
    assert await store.consume_approval(tenant, "once", "delete_file", DIGEST, "run-1", START_MS + 3) is None, (
        "a second consumption by the same run must be refused"
    )
    assert await store.consume_approval(tenant, "once", "delete_file", DIGEST, "run-2", START_MS + 3) is None


async def test_consuming_refuses_another_tool_arguments_run_tenant_or_answer(store: PolicyStore, unique: str) -> None:
    tenant = f"alice-{unique}"
    await approved(store, tenant, "bound")
    at = START_MS + 2
    assert await store.consume_approval(tenant, "bound", "other_tool", DIGEST, "run-1", at) is None
    assert await store.consume_approval(tenant, "bound", "delete_file", arguments_digest({}), "run-1", at) is None
    assert await store.consume_approval(tenant, "bound", "delete_file", DIGEST, "run-other", at) is None
    assert await store.consume_approval(f"bob-{unique}", "bound", "delete_file", DIGEST, "run-1", at) is None
    await store.insert_approval(approval(tenant, "waiting", arguments_sha256=DIGEST))
    assert await store.consume_approval(tenant, "waiting", "delete_file", DIGEST, "run-1", at) is None
    await store.insert_approval(approval(tenant, "refused", arguments_sha256=DIGEST))
    await store.resolve_approval(tenant, "refused", REJECT, START_MS + 1, None)
    assert await store.consume_approval(tenant, "refused", "delete_file", DIGEST, "run-1", at) is None
    await store.insert_approval(approval(tenant, "legacy"))  # no digest: from before binding, never usable
    await store.resolve_approval(tenant, "legacy", APPROVE, START_MS + 1, None)
    assert await store.consume_approval(tenant, "legacy", "delete_file", "", "run-1", at) is None
    fresh = await store.get_approval(tenant, "bound")
    assert fresh is not None
    assert fresh.consumed_at == 0, "refused attempts must leave the approval unused"


async def test_a_deferred_approval_is_consumed_by_the_run_that_resumes_once(store: PolicyStore, unique: str) -> None:
    tenant = f"alice-{unique}"
    await approved(store, tenant, "deferred", deferred=True)
    used = await store.consume_approval(tenant, "deferred", "delete_file", DIGEST, "resuming-run", START_MS + 2)
    assert used is not None
    assert used.consumed_run_id == "resuming-run"
    for run in ("resuming-run", "later-run", "run-1"):
        assert await store.consume_approval(tenant, "deferred", "delete_file", DIGEST, run, START_MS + 3) is None


async def test_racing_consumers_one_wins(store: PolicyStore, unique: str) -> None:
    tenant = f"alice-{unique}"
    await approved(store, tenant, "raced", deferred=True)
    results = await asyncio.gather(
        *(store.consume_approval(tenant, "raced", "delete_file", DIGEST, f"run-{n}", START_MS + 2) for n in range(16))
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1, f"{len(winners)} of 16 racing consumers used one approval"


async def test_pending_approvals_are_capped_per_tenant(store: PolicyStore, unique: str) -> None:
    alice, bob = f"alice-{unique}", f"bob-{unique}"
    inserted = await asyncio.gather(*(store.insert_approval(approval(alice, f"p{n}"), 3) for n in range(8)))
    assert sum(inserted) == 3, "concurrent requests must not overshoot the cap"
    assert len(await store.pending_approvals(alice)) == 3
    assert await store.insert_approval(approval(bob, "b0"), 3), "one tenant's pile does not count against another"
    # Resolved and expired approvals no longer count.
    pending = await store.pending_approvals(alice)
    await store.resolve_approval(alice, pending[0].id, REJECT, START_MS + 1, None)
    assert await store.insert_approval(approval(alice, "after-resolve"), 3)
    assert not await store.insert_approval(approval(alice, "full"), 3)
    later = START_MS + 120_000  # every earlier approval is past its deadline
    assert await store.insert_approval(approval(alice, "after-expiry", created=later), 3)
