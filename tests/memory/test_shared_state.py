"""Two store instances on one database (as two processes would be): each sees the other's writes and forgets.

The SQL and Redis backends cache per-tenant recall indexes in process; these
tests prove the (epoch, seq) probe keeps those caches correct across instances.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loomflow.memory.models import BlockWrite, EpisodeDraft, ForgetScope, RecallQuery, now_micros
from loomflow.memory.store import MemoryStore, open_store
from tests.memory.conftest import SHARED_BACKENDS, dsn_for


@pytest.fixture(params=SHARED_BACKENDS)
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[MemoryStore, MemoryStore]]:
    dsn = dsn_for(str(request.param), tmp_path)
    first, second = open_store(dsn, tmp_path), open_store(dsn, tmp_path)
    await first.start()
    await second.start()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def recall_texts(store: MemoryStore, tenant: str, text: str) -> list[str]:
    return [h.episode.input for h in await store.recall(tenant, RecallQuery(text=text, limit=10))]


async def test_recall_on_one_instance_sees_writes_and_forgets_made_on_another(
    pair: tuple[MemoryStore, MemoryStore], unique: str
) -> None:
    writer, reader = pair
    alice = f"alice-{unique}"
    await writer.remember(alice, EpisodeDraft("", "penguins live in antarctica", ""), now_micros())
    assert await recall_texts(reader, alice, "penguins") == ["penguins live in antarctica"]  # reader caches the index

    await writer.remember(alice, EpisodeDraft("", "penguins cannot fly", ""), now_micros())
    assert sorted(await recall_texts(reader, alice, "penguins")) == [
        "penguins cannot fly",
        "penguins live in antarctica",
    ]

    await writer.forget(alice, ForgetScope(), now_micros())
    assert await recall_texts(reader, alice, "penguins") == [], "a forget on another instance must empty this cache"
    await writer.remember(alice, EpisodeDraft("", "penguins again", ""), now_micros())
    assert await recall_texts(reader, alice, "penguins") == ["penguins again"]


async def test_block_versions_are_checked_across_instances(pair: tuple[MemoryStore, MemoryStore], unique: str) -> None:
    first, second = pair
    alice = f"alice-{unique}"
    await first.put_block(alice, BlockWrite("plan", "", "v1", expected_version=0), now_micros())
    await second.put_block(alice, BlockWrite("plan", "", "v2", expected_version=1), now_micros())
    assert (await first.get_block(alice, "", "plan")).content == "v2"
