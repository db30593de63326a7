"""A tenant whose write is refused inside a group-committed batch cannot fail the other tenants' writes.

Every SQLite store writes through one GroupWriter per file (kernel/backends/sqlite.py): the writes
queued together share one transaction. Here Memory's SQLite store (the embedded default) is held
busy on a real event while a hostile tenant's stale write — stamped before a Forget of its data, so
the store refuses it with ABORTED inside the transaction — queues up with twenty other tenants'
writes. They commit together in one COMMIT (counted on the writer's connection), the hostile write
fails alone, and nothing of it is stored (its seq did not advance either). The other backends
(memory://, Postgres, Redis, Chroma) have no shared batch to fail.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from loomflow.kernel.errors import Aborted
from loomflow.memory.models import EpisodeDraft, ForgetScope, RecallQuery, now_micros
from loomflow.memory.store.sqlite import SQLiteStore

OTHERS = [f"tenant-{n}" for n in range(20)]


async def test_a_refused_write_in_a_batch_fails_alone_and_the_others_commit_together(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "memory.db")
    await store.start()
    try:
        stale = now_micros()  # stamped on arrival, before the Forget below: a write the Forget overtook
        await store.remember("mallory", EpisodeDraft(session_id="s", input="before", output="kept?"), stale - 1)
        await store.forget("mallory", ForgetScope(), now_micros())

        commits: list[str] = []
        gate, busy = threading.Event(), threading.Event()

        def hold(conn: sqlite3.Connection) -> None:
            conn.set_trace_callback(lambda statement: commits.append(statement) if statement == "COMMIT" else None)
            busy.set()
            gate.wait(10)

        holding = asyncio.ensure_future(store.write(hold))
        assert await asyncio.to_thread(busy.wait, 10)

        def note(tenant: str) -> EpisodeDraft:
            return EpisodeDraft(session_id="s", input=f"note of {tenant}", output="ok")

        # Queued in this order (each group reaches the writer's queue before the next starts):
        # ten tenants, the hostile write, ten more: it sits in the middle of the batch.
        others = [asyncio.ensure_future(store.remember(t, note(t), now_micros())) for t in OTHERS[:10]]
        await asyncio.sleep(0.05)
        hostile = asyncio.ensure_future(
            store.remember("mallory", EpisodeDraft(session_id="s", input="replayed", output="x"), stale)
        )
        await asyncio.sleep(0.05)
        others += [asyncio.ensure_future(store.remember(t, note(t), now_micros())) for t in OTHERS[10:]]
        await asyncio.sleep(0.05)
        gate.set()
        await holding

        with pytest.raises(Aborted):
            await hostile
        stored = await asyncio.gather(*others)
        assert [e.input for e in stored] == [f"note of {t}" for t in OTHERS]
        assert commits == ["COMMIT", "COMMIT"], "the hold's batch, then one batch for all twenty-one writes"
        for tenant in OTHERS:
            hits = await store.recall(tenant, RecallQuery(text=f"note of {tenant}", limit=5))
            assert [h.episode.input for h in hits] == [f"note of {tenant}"]
        assert await store.recall("mallory", RecallQuery(text="replayed before", limit=5)) == []
        assert (await store.probe("mallory"))[1] == 1, "the refused write's seq was rolled back with it"
    finally:
        await store.close()
