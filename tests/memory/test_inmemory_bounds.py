"""The in-memory backend's bounded state: LRU by tenant count and idle TTL, both tunable and disableable."""

from __future__ import annotations

from loomflow.memory.models import EpisodeDraft, RecallQuery, now_micros
from loomflow.memory.store.inmemory import DEFAULT_IDLE_TTL_SECONDS, DEFAULT_MAX_USERS, InMemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def touch(store: InMemoryStore, tenant: str) -> None:
    await store.remember(tenant, EpisodeDraft("", f"note of {tenant}", ""), now_micros())


def test_defaults_are_100k_users_and_24_hours() -> None:
    assert (DEFAULT_MAX_USERS, DEFAULT_IDLE_TTL_SECONDS) == (100_000, 86_400.0)


async def test_least_recently_used_tenant_is_evicted_beyond_max_users() -> None:
    store = InMemoryStore(max_users=3, idle_ttl_seconds=0, clock=Clock())
    for name in ["a", "b", "c"]:
        await touch(store, name)
    await store.recall("a", RecallQuery(text="note", limit=1))  # a is now the most recently used
    await touch(store, "d")
    assert store.tenant_count == 3
    assert not store.holds("b"), "b was least recently used and must be evicted"
    assert all(store.holds(name) for name in ["a", "c", "d"])


async def test_tenant_idle_longer_than_ttl_is_dropped_and_active_one_kept() -> None:
    clock = Clock()
    store = InMemoryStore(max_users=0, idle_ttl_seconds=60, clock=clock)
    await touch(store, "idle")
    await touch(store, "busy")
    clock.now += 45
    await touch(store, "busy")
    clock.now += 30  # idle: 75 s without use; busy: 30 s
    assert not store.holds("idle")
    assert store.holds("busy")
    assert await store.recall("idle", RecallQuery(text="note", limit=5)) == []


async def test_reads_of_unknown_tenants_do_not_create_state() -> None:
    store = InMemoryStore(max_users=2, idle_ttl_seconds=0, clock=Clock())
    await touch(store, "a")
    for i in range(10):
        await store.recall(f"stranger-{i}", RecallQuery(text="x", limit=1))
        await store.list_blocks(f"stranger-{i}", None)
    assert store.tenant_count == 1
    assert store.holds("a")


async def test_both_bounds_can_be_disabled() -> None:
    clock = Clock()
    store = InMemoryStore(max_users=0, idle_ttl_seconds=0, clock=clock)
    for i in range(500):
        await touch(store, f"user-{i}")
    clock.now += 10 * DEFAULT_IDLE_TTL_SECONDS
    assert store.tenant_count == 500
    assert store.holds("user-0")
