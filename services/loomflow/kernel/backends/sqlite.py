"""Opening SQLite files the way every embedded store needs them, and their write transactions and migrations.

A store's file is opened in autocommit mode (transactions are explicit ``BEGIN IMMEDIATE``), shareable
across threads (each store serialises use itself), waiting for other processes' locks rather than
failing at once, in WAL mode (readers never block the writer).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

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
