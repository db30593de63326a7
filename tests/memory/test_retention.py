"""Episode retention on every memory backend: what a sweep deletes, that recall forgets it too,
and that other tenants, newer episodes and blocks are untouched."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loomflow.kernel.errors import NotFound
from loomflow.memory.models import BlockWrite, EpisodeDraft, RecallQuery
from loomflow.memory.store import MemoryStore

T0 = 1_780_000_000_000_000  # µs
SECOND = 1_000_000


def draft(text: str) -> EpisodeDraft:
    return EpisodeDraft(session_id="s", input=f"tell me about {text}", output=f"{text} noted")


async def test_deleting_episodes_before_a_cutoff_is_bounded_scoped_and_reaches_recall(
    store: MemoryStore, tenant: Callable[[str], str]
) -> None:
    alice, bob = tenant("alice"), tenant("bob")
    old = [await store.remember(alice, draft(f"walrus{i}"), T0 + i * SECOND) for i in range(3)]
    kept = await store.remember(alice, draft("walrus-new"), T0 + 10 * SECOND)
    bobs = await store.remember(bob, draft("walrus-bob"), T0)
    await store.recall(alice, RecallQuery(text="walrus", limit=10))  # build (and cache) the recall index first
    await store.put_block(alice, BlockWrite(session_id="", label="profile", content="old block"), T0)

    cutoff = T0 + 5 * SECOND
    listed = await store.tenants_with_episodes_before(cutoff, "", 1_000_000)
    assert {alice, bob} <= set(listed)
    assert listed == sorted(listed)
    assert await store.delete_episodes_before(alice, cutoff, 2) == 2, "a batch deleted more (or less) than its limit"
    assert await store.delete_episodes_before(alice, cutoff, 100) == 1
    assert await store.delete_episodes_before(alice, cutoff, 100) == 0

    for episode in old:
        with pytest.raises(NotFound):
            await store.get_episode(alice, episode.id)
    hits = await store.recall(alice, RecallQuery(text="walrus", limit=10))
    assert [h.episode.id for h in hits] == [kept.id], "recall still returns an episode retention deleted"
    assert (await store.get_episode(bob, bobs.id)).id == bobs.id, "another tenant's episode was swept"
    assert [b.label for b in await store.list_blocks(alice, None)] == ["profile"], "episode retention took a block"
