"""A ranking is judged fresh by what the index held when it ranked, not by the shared entry afterwards.

A run reads its session's history and recalls at once, so two calls of one
tenant share a cached index. Here call A ranks on an index without the newest
episode and waits on its read; meanwhile call B refreshes the shared entry.
When A's read comes back, the database's highest seq equals the entry's
*new* ``seen_seq``; judging by that, A used to answer from its stale ranking and
a completed turn was missing from the next run's history (a flake seen on
Redis under load). Every backend with a cached index runs it; the interleaving
is forced, not hoped for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

import pytest

from loomflow.memory.models import Episode, EpisodeDraft, RecallQuery, SessionPage, now_micros
from loomflow.memory.recall.cache import IndexCache
from loomflow.memory.recall.embedding import HashingEmbedder
from loomflow.memory.recall.engine import CachedRecall, RecallSource
from loomflow.memory.recall.index import IndexedDoc
from loomflow.memory.store import MemoryStore
from tests.memory.conftest import BACKENDS

CACHED_BACKENDS = [p for p in BACKENDS if p.id != "memory"]  # the in-memory store indexes in place, no cache


class HeldFirstRead:
    """The store itself as the recall source, except that the first held read waits until released."""

    def __init__(self, store: RecallSource) -> None:
        self._store = store
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.hold_next = False

    async def probe(self, tenant: str) -> tuple[int, int]:
        return await self._store.probe(tenant)

    async def load(self, tenant: str, after_seq: int) -> list[IndexedDoc]:
        return await self._store.load(tenant, after_seq)

    async def probe_and_fetch(self, tenant: str, seqs: Sequence[int]) -> tuple[int, int, Mapping[int, Episode]]:
        if self.hold_next:
            self.hold_next = False
            self.held.set()
            await self.release.wait()
        return await self._store.probe_and_fetch(tenant, seqs)


@pytest.mark.parametrize("backend", CACHED_BACKENDS)
async def test_a_refresh_by_a_concurrent_call_does_not_make_a_stale_ranking_fresh(
    store: MemoryStore, tenant: Callable[[str], str]
) -> None:
    alice = tenant("alice")
    source = HeldFirstRead(store)  # type: ignore[arg-type]
    recall = CachedRecall(source, HashingEmbedder(), IndexCache(10_000))
    page = SessionPage("conv_42", limit=10)
    first = await store.remember(alice, EpisodeDraft("conv_42", "I'm flying to Rome", "Noted."), now_micros())
    assert [e.id for e in await recall.list_session(alice, page)] == [first.id]

    second = await store.remember(alice, EpisodeDraft("conv_42", "I'm flying to Lisbon", "Noted."), now_micros())
    source.hold_next = True
    stale_reader = asyncio.create_task(recall.list_session(alice, page))  # ranks on [first], then waits
    await asyncio.wait_for(source.held.wait(), 10)
    assert [e.id for e in await recall.list_session(alice, page)] == [second.id, first.id]  # refreshes the entry
    source.release.set()

    listed = await asyncio.wait_for(stale_reader, 10)
    assert [e.id for e in listed] == [second.id, first.id], "an episode stored before the call must be listed"


@pytest.mark.parametrize("backend", CACHED_BACKENDS)
async def test_a_recall_racing_a_refresh_still_finds_the_newest_episode(
    store: MemoryStore, tenant: Callable[[str], str]
) -> None:
    alice = tenant("alice")
    source = HeldFirstRead(store)  # type: ignore[arg-type]
    recall = CachedRecall(source, HashingEmbedder(), IndexCache(10_000))
    query = RecallQuery(text="flying", limit=10)
    await store.remember(alice, EpisodeDraft("conv_1", "I'm flying to Rome", "Noted."), now_micros())
    assert len(await recall.recall(alice, query)) == 1

    newest = await store.remember(alice, EpisodeDraft("conv_2", "I'm flying to Lisbon", "Noted."), now_micros())
    source.hold_next = True
    stale_recall = asyncio.create_task(recall.recall(alice, query))
    await asyncio.wait_for(source.held.wait(), 10)
    await recall.list_session(alice, SessionPage("conv_2", limit=10))  # refreshes the shared entry
    source.release.set()

    hits = await asyncio.wait_for(stale_recall, 10)
    assert newest.id in {hit.episode.id for hit in hits}, "an episode stored before the recall must be found"
