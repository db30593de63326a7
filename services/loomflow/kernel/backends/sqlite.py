"""Opening SQLite files the way every embedded store needs them, and their write transactions and migrations.

A store's file is opened in autocommit mode (transactions are explicit ``BEGIN IMMEDIATE``), shareable
across threads (each store serialises use itself), waiting for other processes' locks rather than
failing at once, in WAL mode (readers never block the writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

WRITE_BATCH = 64
"""Writes one :class:`GroupWriter` transaction holds at most."""

SYNCHRONOUS = ("normal", "full")
"""``normal``: a commit survives a crash of the process, an OS crash or power loss may undo the last
few; ``full``: every commit is fsynced (survives power loss; each write then waits for the disk)."""


def connect(
    path: str | Path,
    *,
    busy_timeout: float = 10.0,
    synchronous: str | None = None,
    mmap_bytes: int | None = None,
    query_only: bool = False,
    wal: bool = True,
) -> sqlite3.Connection:
    """Opens ``path`` (creating its folder); ``synchronous``/``mmap_bytes`` None keep SQLite's defaults."""
    if synchronous is not None and synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, not {synchronous!r}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout)
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")  # first: switching to WAL waits for others too
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    if synchronous is not None:
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    if mmap_bytes is not None:
        conn.execute(f"PRAGMA mmap_size={int(mmap_bytes)}")
    if query_only:
        conn.execute("PRAGMA query_only=1")
    return conn


def write(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """Runs ``work(conn)`` in one ``BEGIN IMMEDIATE`` transaction: committed, or rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def migrate(conn: sqlite3.Connection, migrations: Sequence[Sequence[str]]) -> int:
    """Applies migrations ``user_version + 1 …`` in one write transaction; ``PRAGMA user_version`` records how far
    the file got (the SQLite counterpart of the Postgres runner's bookkeeping table). Returns the version."""

    def run(c: sqlite3.Connection) -> int:
        (version,) = c.execute("PRAGMA user_version").fetchone()
        for number, statements in enumerate(migrations, start=1):
            if number <= version:
                continue
            for statement in statements:
                c.execute(statement)
            c.execute(f"PRAGMA user_version = {number}")
        return max(int(version), len(migrations))

    (current,) = conn.execute("PRAGMA user_version").fetchone()
    if current >= len(migrations):
        return int(current)  # nothing to do: no write lock taken
    return write(conn, run)


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    done: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    in_transaction: bool
    """A write (runs in the shared transaction, inside its own savepoint), or plain work on the connection."""
    result: Any = None
    error: BaseException | None = None


_STOP = object()


class GroupWriter:
    """Every write of one SQLite file on one thread, the writes that queue up together committed together.

    SQLite commits one transaction at a time per file, and a commit (and the hop to the writer's
    thread) costs more than a small write itself. So the thread takes every write waiting (up to
    ``max_batch``) into one ``BEGIN IMMEDIATE`` transaction and commits once; each write runs inside
    its own ``SAVEPOINT``, so one that raises is rolled back and fails alone, and another tenant's
    write in the same batch still commits (``tests/test_backends_group_commit.py``). A caller hears
    back only after the ``COMMIT`` that made its write durable (to the ``synchronous`` setting), and
    one loop wake-up settles a whole batch. What it buys, a commit per write against one per batch
    side by side: ``python -m bench sqlite_writes`` (docs/performance.md).

    If the transaction itself is lost (the disk refuses the commit, or SQLite rolls the whole
    transaction back on an I/O error), the writes it held fail with that error, none of them being
    durable; the writes after it run in a new transaction. A write whose caller was cancelled
    before the thread reached it is skipped.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str, max_batch: int = WRITE_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, not {max_batch}")
        self._connect = connect
        self._max_batch = max_batch
        self._name = name
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._started = False

    @property
    def connection(self) -> sqlite3.Connection | None:
        """The writer's connection (use only through :meth:`write` and :meth:`call`)."""
        return self._conn

    async def start(self) -> None:
        """Starts the thread and opens the connection on it; raises what opening raises."""
        self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
        self._thread.start()
        self._started = True
        self._conn = await self._submit(lambda _: self._connect(), in_transaction=False)

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Runs ``work(conn)`` in a write transaction shared with the writes queued with it; returns once committed."""
        result: T = await self._submit(work, in_transaction=True)
        return result

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs ``fn(conn)`` on the writer's thread outside any transaction (migrations, maintenance)."""
        result: T = await self._submit(fn, in_transaction=False)
        return result

    async def close(self) -> None:
        """Lets every queued job finish, closes the connection and stops the thread; later work is refused."""
        if not self._started:
            return
        self._started = False
        loop = asyncio.get_running_loop()
        closing = _Job(self._close_connection, loop.create_future(), loop, in_transaction=False)
        self._queue.put(closing)  # after everything queued before: it all runs first
        self._queue.put(_STOP)
        try:
            await closing.done
        finally:
            if self._thread is not None:
                await loop.run_in_executor(None, self._thread.join)

    def _close_connection(self, conn: sqlite3.Connection | None) -> None:
        self._conn = None
        if conn is not None:
            conn.close()

    async def _submit(self, fn: Callable[[sqlite3.Connection], Any], *, in_transaction: bool) -> Any:
        if not self._started:
            raise RuntimeError("the SQLite writer is not started")
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop.create_future(), loop, in_transaction)
        self._queue.put(job)
        return await job.done

    # -- the writer's thread ----------------------------------------------------

    def _serve(self) -> None:
        held: _Job | object | None = None  # taken while filling a batch, but not part of it
        while True:
            if held is None:
                item = self._queue.get()
            else:
                item, held = held, None
            if item is _STOP:
                return
            assert isinstance(item, _Job)
            if not item.in_transaction:
                self._run_alone(item)
                _settle([item])
                continue
            batch = [item]
            while len(batch) < self._max_batch:
                try:
                    following = self._queue.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(following, _Job) or not following.in_transaction:
                    held = following  # a stop or plain work runs after this batch, in order
                    break
                batch.append(following)
            self._commit([job for job in batch if not job.done.cancelled()])
            _settle(batch)

    def _run_alone(self, job: _Job) -> None:
        try:
            job.result = job.fn(self._conn)  # type: ignore[arg-type]  # None only before start's connect
        except Exception as exc:  # noqa: BLE001  # handed to the caller, who sees it raised
            job.error = exc

    def _commit(self, batch: list[_Job]) -> None:
        conn = self._conn
        if conn is None:
            for job in batch:
                job.error = RuntimeError("the SQLite writer is closed")
            return
        applied: list[_Job] = []
        open_transaction = False
        for position, job in enumerate(batch):
            if not open_transaction:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except Exception as exc:  # noqa: BLE001  # a busy or broken file: the rest of the batch fails with it
                    for rest in batch[position:]:
                        rest.error = exc
                    break
                open_transaction = True
            try:
                conn.execute("SAVEPOINT write")
                job.result = job.fn(conn)
                conn.execute("RELEASE write")
                applied.append(job)
            except Exception as exc:  # noqa: BLE001  # handed to this write's caller alone...
                job.error = exc
                if conn.in_transaction and _rolled_back_to_savepoint(conn):
                    continue
                # ...unless it took the transaction with it: the writes before it are lost too.
                self._lose(conn, applied, exc)
                applied, open_transaction = [], False
        if open_transaction:
            try:
                conn.execute("COMMIT")
            except Exception as exc:  # noqa: BLE001  # nothing of the batch is durable
                self._lose(conn, applied, exc)

    @staticmethod
    def _lose(conn: sqlite3.Connection, jobs: list[_Job], error: Exception) -> None:
        """The transaction is gone (or must go): roll it back and fail ``jobs``, whose writes it held."""
        if conn.in_transaction:
            with contextlib.suppress(Exception):  # the connection reports the next failure itself
                conn.execute("ROLLBACK")
        for job in jobs:
            job.result, job.error = None, error


def _rolled_back_to_savepoint(conn: sqlite3.Connection) -> bool:
    """Undoes the failed write's changes (and nothing before it); False if that was not possible."""
    try:
        conn.execute("ROLLBACK TO write")
        conn.execute("RELEASE write")
    except Exception:  # noqa: BLE001
        return False
    return True


def _settle(jobs: list[_Job]) -> None:
    """Hands each job's outcome to its loop: one wake-up per loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
    for job in jobs:
        by_loop.setdefault(job.loop, []).append(job)
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, settled)


def _resolve(jobs: list[_Job]) -> None:
    for job in jobs:
        if job.done.done():
            continue
        if job.error is not None:
            job.done.set_exception(job.error)
        else:
            job.done.set_result(job.result)
