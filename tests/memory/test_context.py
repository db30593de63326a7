"""GetContext's answer fits one message: its parts share the room, and each keeps what its own RPC
would list first (the parts' equality with the single RPCs, on every backend, is in test_conformance.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loomflow.kernel.tenancy import tenant_key
from loomflow.memory.context import shares
from loomflow.memory.models import BlockWrite, EpisodeDraft, FactAssertion, now_micros
from loomflow.memory.servicer import MemoryServicer
from loomflow.memory.store import open_store
from loomflow.v1 import memory_pb2, tenancy_pb2

ALICE = tenancy_pb2.UserScope(user_id="alice")


@pytest.mark.parametrize(
    ("wanted", "room", "given"),
    [
        ([10, 100, 1000], 300, [10, 100, 190]),
        ([500, 500], 300, [150, 150]),
        ([5, 0, 7], 100, [5, 0, 7]),
        ([], 100, []),
    ],
)
def test_parts_smaller_than_an_equal_share_keep_all_and_leave_the_rest_to_the_others(
    wanted: list[int], room: int, given: list[int]
) -> None:
    assert shares(wanted, room) == given


async def test_a_get_context_answer_fits_one_message_and_every_part_keeps_its_leading_records(tmp_path: Path) -> None:
    store = open_store("memory://", tmp_path)
    await store.start()
    alice = tenant_key(ALICE)
    big = "filler " * 4_000  # ~28 KB per record: one fits in a third of 128 KiB, two do not
    now = now_micros()
    try:
        for n in range(4):
            await store.remember(alice, EpisodeDraft("s1", f"needle {n} {big}", "ok"), now + n)
            await store.put_block(alice, BlockWrite(f"block {n}", "", big), now)
        await store.assert_fact(alice, FactAssertion("alice", "likes", "tea", now - 1_000_000, None), now)
        request = memory_pb2.GetContextRequest(
            scope=ALICE,
            session_id="s1",
            recall_query="needle",
            recall_limit=4,
            history_page_size=4,
            blocks_page_size=4,
            facts_page_size=10,
        )
        roomy = await MemoryServicer(store).GetContext(request, None)
        tight = await MemoryServicer(store, max_message_bytes=192 * 1024).GetContext(request, None)
        older = await MemoryServicer(store).ListEpisodes(
            memory_pb2.ListEpisodesRequest(scope=ALICE, session_id="s1", page_token=tight.history_next_page_token), None
        )
    finally:
        await store.close()
    assert (len(roomy.recall_hits), len(roomy.history), len(roomy.blocks), len(roomy.facts)) == (4, 4, 4, 1)
    assert tight.ByteSize() <= 192 * 1024, "the answer must be deliverable in one message"
    assert list(tight.facts) == list(roomy.facts), "a part smaller than its share keeps everything"
    for part in ("recall_hits", "history", "blocks"):
        kept = list(getattr(tight, part))
        assert 0 < len(kept) < 4, f"{part}: the large parts share what is left"
        assert kept == list(getattr(roomy, part))[: len(kept)], f"{part}: the leading records, in the RPC's order"
    assert tight.more_blocks
    assert [e.id for e in tight.history] + [e.id for e in older.episodes] == [e.id for e in roomy.history], (
        "the history token continues right after what the cut part kept"
    )
