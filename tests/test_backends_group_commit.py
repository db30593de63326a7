"""The shared SQLite writer (kernel/backends/sqlite.py GroupWriter) on a real file.

Writes that queue up while the writer's thread is busy share one transaction and one COMMIT,
each in its own savepoint: one write that raises fails alone (another tenant's write in the same
batch still commits), a write that takes the whole transaction with it fails the writes before it
(none of them is durable) but not the ones after, and every caller hears back only once its
write is committed. The writer's thread is held on a real event to make a batch.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from loomflow.kernel.backends import sqlite as sqlite_backend
from loomflow.kernel.backends.sqlite import GroupWriter


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[tuple[GroupWriter, Path]]:
    path = tmp_path / "group.db"
    group = GroupWriter(lambda: sqlite_backend.connect(path, synchronous="normal"), "test-writer")
    await group.start()
    await group.call(lambda conn: sqlite_backend.write(conn, _create))
    try:
        yield group, path
    finally:
        await group.close()


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE rows (tenant TEXT NOT NULL, value INTEGER NOT NULL)")


def _insert(tenant: str, value: int) -> Callable[[sqlite3.Connection], int]:
    def work(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO rows VALUES (?, ?)", (tenant, value))
        return value

    return work


def _rows(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as reader:  # another connection: sees committed rows only
        return [(str(t), int(v)) for t, v in reader.execute("SELECT tenant, value FROM rows ORDER BY value")]


async def _held(group: GroupWriter) -> tuple[threading.Event, asyncio.Future[None]]:
    """Occupies the writer's thread until the returned event is set, so the next writes queue up."""
    gate, busy = threading.Event(), threading.Event()

    def hold(_: sqlite3.Connection) -> None:
        busy.set()
        gate.wait(10)

    holding = asyncio.ensure_future(group.call(hold))
    assert await asyncio.to_thread(busy.wait, 10), "the writer's thread never took the holding job"
    return gate, holding


def _count_commits(group: GroupWriter) -> list[str]:
    statements: list[str] = []
    conn = group.connection
    assert conn is not None
    conn.set_trace_callback(lambda statement: statements.append(statement) if statement == "COMMIT" else None)
    return statements


async def test_writes_queued_together_commit_once_and_each_caller_hears_back_after_the_commit(
    writer: tuple[GroupWriter, Path],
) -> None:
    group, path = writer
    commits = _count_commits(group)
    gate, holding = await _held(group)
    writes = [asyncio.ensure_future(group.write(_insert(f"tenant-{n}", n))) for n in range(20)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in writes)
    gate.set()
    await holding
    for n, write in enumerate(writes):
        assert await write == n
    assert len(commits) == 1, commits
    assert [v for _, v in _rows(path)] == list(range(20))  # committed before any caller heard back


async def test_a_failing_write_fails_alone_and_its_changes_are_rolled_back(writer: tuple[GroupWriter, Path]) -> None:
    group, path = writer
    commits = _count_commits(group)

    def hostile(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO rows VALUES ('mallory', 99)")
        raise ValueError("refused")

    gate, holding = await _held(group)
    before = asyncio.ensure_future(group.write(_insert("alice", 1)))
    failing = asyncio.ensure_future(group.write(hostile))
    after = asyncio.ensure_future(group.write(_insert("bob", 2)))
    await asyncio.sleep(0.05)
    gate.set()
    await holding
    assert await before == 1
    with pytest.raises(ValueError, match="refused"):
        await failing
    assert await after == 2
    assert _rows(path) == [("alice", 1), ("bob", 2)]  # mallory's row rolled back, nobody else's
    assert len(commits) == 1


async def test_a_write_that_takes_the_transaction_with_it_fails_the_writes_before_it_only(
    writer: tuple[GroupWriter, Path],
) -> None:
    group, path = writer

    def ends_the_transaction(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")  # as SQLite does on an I/O error: the whole transaction is gone
        raise sqlite3.OperationalError("disk I/O error")

    gate, holding = await _held(group)
    lost = asyncio.ensure_future(group.write(_insert("alice", 1)))
    breaking = asyncio.ensure_future(group.write(ends_the_transaction))
    later = asyncio.ensure_future(group.write(_insert("bob", 2)))
    await asyncio.sleep(0.05)
    gate.set()
    await holding
    for failed in (lost, breaking):
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
            await failed  # alice's write was in the lost transaction: her caller must not hear "done"
    assert await later == 2
    assert _rows(path) == [("bob", 2)]


async def test_plain_work_runs_in_order_between_batches_and_close_finishes_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "order.db"
    group = GroupWriter(lambda: sqlite_backend.connect(path), "test-writer", max_batch=4)
    await group.start()
    await group.call(lambda conn: sqlite_backend.write(conn, _create))
    gate, holding = await _held(group)
    seen: list[str] = []

    def count(conn: sqlite3.Connection) -> int:
        (rows,) = conn.execute("SELECT count(*) FROM rows").fetchone()
        seen.append(f"count {rows}")
        return int(rows)

    first = [asyncio.ensure_future(group.write(_insert("a", n))) for n in range(6)]  # two batches: 4, then 2
    between = asyncio.ensure_future(group.call(count))
    last = asyncio.ensure_future(group.write(_insert("a", 6)))
    await asyncio.sleep(0.05)
    gate.set()
    await holding
    await group.close()  # waits for everything queued before it
    assert all(w.done() for w in [*first, between, last])
    assert await between == 6  # after every write queued before it, before the one queued after
    assert [v for _, v in _rows(path)] == list(range(7))


async def test_a_write_before_start_or_after_close_is_refused(tmp_path: Path) -> None:
    group = GroupWriter(lambda: sqlite_backend.connect(tmp_path / "x.db"), "test-writer")
    with pytest.raises(RuntimeError, match="not started"):
        await group.write(_insert("a", 1))
    await group.start()
    await group.close()
    with pytest.raises(RuntimeError, match="not started"):
        await group.write(_insert("a", 1))
    with pytest.raises(ValueError, match="max_batch"):
        GroupWriter(lambda: sqlite_backend.connect(tmp_path / "y.db"), "test-writer", max_batch=0)
