"""The Agent's durable store, one conformance suite over SQLite and Postgres: definitions and paused runs."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loomflow.agent.store import AgentStore, PausedRecord, open_agent_store
from loomflow.agent.store.base import ErasureRow
from loomflow.kernel.errors import Aborted, NotFound, ResourceExhausted
from tests.support import backends

STORES = [pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> AsyncIterator[AgentStore]:
    if request.param == "sqlite":
        opened = open_agent_store(f"sqlite://{tmp_path}/agent.db", tmp_path)
        await opened.start()
        yield opened
        await opened.close()
        return
    async with backends.postgres_schema(f"agent_{unique}") as dsn:
        opened = open_agent_store(dsn, tmp_path)
        await opened.start()
        yield opened
        await opened.close()


def paused(tenant: str, run_id: str, expires_at: int) -> PausedRecord:
    return PausedRecord(tenant=tenant, run_id=run_id, state='{"turns": 1}', reservation_id="r-1", expires_at=expires_at)


async def test_definitions_version_on_every_put_and_read_back(store: AgentStore) -> None:
    first = await store.put_definition("support", '{"name":"support"}', 10)
    second = await store.put_definition("support", '{"name":"support","model":"echo"}', 20)
    assert (first.version, second.version) == (1, 2)
    read = await store.get_definition("support")
    assert read == second
    assert await store.delete_definition("support") == 2
    with pytest.raises(NotFound):
        await store.get_definition("support")
    with pytest.raises(NotFound):
        await store.delete_definition("support")


async def test_definitions_list_in_name_order_page_by_page(store: AgentStore) -> None:
    for name in ("zeta", "alpha", "mid", "beta"):
        await store.put_definition(name, "{}", 1)
    first = await store.list_definitions("", 3)
    assert [d.name for d in first] == ["alpha", "beta", "mid"]
    assert [d.name for d in await store.list_definitions("mid", 3)] == ["zeta"]


async def test_a_paused_run_is_found_only_by_its_tenant_and_taken_once(store: AgentStore) -> None:
    await store.pause(paused("alice", "run-1", 10_000), now=0, max_per_tenant=10)
    assert (await store.get_paused("alice", "run-1")).state == '{"turns": 1}'
    with pytest.raises(NotFound):
        await store.get_paused("bob", "run-1")
    with pytest.raises(NotFound):
        await store.take_paused("bob", "run-1")
    taken = await asyncio.gather(
        store.take_paused("alice", "run-1"), store.take_paused("alice", "run-1"), return_exceptions=True
    )
    assert sum(isinstance(t, PausedRecord) for t in taken) == 1, "a paused run must resume exactly once"
    assert sum(isinstance(t, NotFound) for t in taken) == 1


async def test_paused_runs_per_tenant_are_capped_and_expired_ones_do_not_count(store: AgentStore) -> None:
    await store.pause(paused("alice", "old", 50), now=0, max_per_tenant=2)
    await store.pause(paused("alice", "new", 10_000), now=0, max_per_tenant=2)
    with pytest.raises(ResourceExhausted):
        await store.pause(paused("alice", "third", 10_000), now=0, max_per_tenant=2)
    await store.pause(paused("bob", "his", 10_000), now=0, max_per_tenant=2)  # another tenant's cap is its own
    await store.pause(paused("alice", "third", 10_000), now=100, max_per_tenant=2)  # "old" has expired by now


async def test_expiry_marks_due_runs_once_and_they_cannot_be_taken(store: AgentStore) -> None:
    await store.pause(paused("alice", "due", 50), now=0, max_per_tenant=10)
    await store.pause(paused("alice", "live", 10_000), now=0, max_per_tenant=10)
    expired = await store.expire_paused(now=100, limit=10)
    assert [(r.run_id, r.reservation_id) for r in expired] == [("due", "r-1")]
    assert await store.expire_paused(now=100, limit=10) == [], "a run's hold is released once"
    marker = await store.get_paused("alice", "due")
    assert marker.status == "expired"
    with pytest.raises(NotFound):
        await store.take_paused("alice", "due")
    assert await store.purge_expired(before=60) == 1
    with pytest.raises(NotFound):
        await store.get_paused("alice", "due")
    assert (await store.get_paused("alice", "live")).status == "paused"


# -- ForgetUser: paused runs and erasure jobs ----------------------------------------------------------


async def test_forgetting_paused_runs_takes_only_that_tenants_runs_and_markers(store: AgentStore) -> None:
    for tenant in ("alice", "alice2", "bob"):
        await store.pause(paused(tenant, "run-1", 10**15), now=0, max_per_tenant=10)
    await store.pause(paused("alice", "run-2", 5), now=0, max_per_tenant=10)
    await store.expire_paused(10, 100)  # alice's run-2 becomes an expired marker
    assert [r.run_id for r in await store.export_paused("alice")] == ["run-1", "run-2"]
    forgotten = await store.forget_paused("alice", at=1_000)
    assert sorted((r.run_id, r.status) for r in forgotten) == [("run-1", "paused"), ("run-2", "expired")]
    assert await store.export_paused("alice") == []
    assert await store.forget_paused("alice", at=900) == [], "idempotent"
    for other in ("alice2", "bob"):
        assert [r.run_id for r in await store.export_paused(other)] == ["run-1"], f"{other}'s paused run went too"


async def test_a_run_that_started_before_the_forget_cannot_pause_after_it(store: AgentStore) -> None:
    await store.forget_paused("alice", at=1_000)
    await store.forget_paused("alice", at=500)  # an older cutoff never moves the tombstone back
    late = dataclasses.replace(paused("alice", "run-late", 10**15), started_at=999)
    with pytest.raises(Aborted):
        await store.pause(late, now=2_000, max_per_tenant=10)
    assert await store.export_paused("alice") == []
    fresh = dataclasses.replace(paused("alice", "run-new", 10**15), started_at=1_000)
    await store.pause(fresh, now=2_000, max_per_tenant=10)
    assert [r.run_id for r in await store.export_paused("alice")] == ["run-new"], "a run started after is new data"
    await store.pause(paused("bob", "run-1", 10**15), now=2_000, max_per_tenant=10)  # bob has no tombstone


async def test_an_erasure_is_stored_once_per_request_leased_to_one_caller_and_found_only_by_its_tenant(
    store: AgentStore,
) -> None:
    row = ErasureRow("era_1", "alice", "ticket-1", "{}", "pending", 0, 0, 1)
    assert await store.insert_erasure(row) == row
    duplicate = ErasureRow("era_2", "alice", "ticket-1", "{}", "pending", 0, 0, 2)
    assert (await store.insert_erasure(duplicate)).id == "era_1", "the same request answers the same erasure"
    assert (await store.pending_erasure("alice")) == row
    assert await store.pending_erasure("bob") is None
    with pytest.raises(NotFound):
        await store.get_erasure("bob", "era_1")
    assert await store.due_erasures(now=100, limit=10) == ["era_1"]
    claims = await asyncio.gather(*(store.claim_erasure("era_1", 100, 1_000) for _ in range(5)))
    assert sum(c is not None for c in claims) == 1, "one caller at a time runs an erasure"
    assert await store.due_erasures(now=100, limit=10) == [], "a leased erasure is not due"
    await store.save_erasure("era_1", '{"x":1}', "done", 0)
    saved = await store.get_erasure("alice", "era_1")
    assert (saved.body, saved.state, saved.leased_until) == ('{"x":1}', "done", 0)
    assert await store.claim_erasure("era_1", 2_000, 3_000) is None, "a done erasure is never run again"
    assert await store.pending_erasure("alice") is None
