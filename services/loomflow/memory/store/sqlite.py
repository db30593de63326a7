"""The embedded default backend: one SQLite file in WAL mode.

Writes run in one dedicated thread, each inside its own savepoint of a ``BEGIN
IMMEDIATE`` transaction that the writes queued together share
(:class:`~loomflow.kernel.backends.sqlite.GroupWriter`: one commit per batch, a
failing write fails alone): SQLite's write lock serialises them (across
processes too), so a write and a Forget of the same tenant can never interleave. Small indexed reads (the
recall probe, hit and by-id lookups) run directly on the event loop through a
second connection: in WAL mode readers never wait for the writer, and an
indexed point read (~10 µs) is cheaper than a hop to a thread. Scans that can
grow with a tenant's data (index rebuilds, exports) use a third connection in
its own thread.

Recall keeps each tenant's index in process (:class:`IndexCache`) and checks
the tenant's (epoch, seq) row on every call, so writes and Forgets made by
another process on the same file are seen on the next Recall.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from loomflow.kernel.backends import sqlite as sqlite_backend
from loomflow.kernel.backends.errors import unavailable_on_outage
from loomflow.kernel.errors import NotFound, Unavailable
from loomflow.memory import blocks, facts, forgetting
from loomflow.memory.episodes import stamp
from loomflow.memory.models import (
    AssertionResult,
    Block,
    BlockWrite,
    Episode,
    EpisodeDraft,
    ExportRecord,
    Fact,
    FactAssertion,
    FactQuery,
    ForgetResult,
    ForgetScope,
    Micros,
    RecallHit,
    RecallQuery,
    SessionPage,
)
from loomflow.memory.recall.cache import IndexCache
from loomflow.memory.recall.embedding import Embedder, HashingEmbedder, Vector, embedder_of, to_bytes, usable
from loomflow.memory.recall.engine import CachedRecall
from loomflow.memory.recall.index import IndexedDoc
from loomflow.memory.recall.reembed import rewrite_stale
from loomflow.memory.store import SQLITE_MMAP_BYTES, retention, sql

T = TypeVar("T")

DEFAULT_CACHE_EPISODES = 2_000_000
EXPORT_PAGE = 500

# Migrations run in order inside one BEGIN IMMEDIATE; PRAGMA user_version records how far a file got.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS memory_tenants (
            tenant TEXT PRIMARY KEY, epoch INTEGER NOT NULL, seq INTEGER NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS memory_episodes (
            tenant TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, session_id TEXT NOT NULL,
            input TEXT NOT NULL, output TEXT NOT NULL, metadata TEXT NOT NULL, run_id TEXT NOT NULL,
            created_at INTEGER NOT NULL, embedding BLOB,
            PRIMARY KEY (tenant, seq)
        )""",
        "CREATE UNIQUE INDEX IF NOT EXISTS memory_episodes_by_id ON memory_episodes (tenant, id)",
        """CREATE TABLE IF NOT EXISTS memory_blocks (
            tenant TEXT NOT NULL, session_id TEXT NOT NULL, label TEXT NOT NULL, content TEXT NOT NULL,
            version INTEGER NOT NULL, updated_at INTEGER NOT NULL,
            PRIMARY KEY (tenant, session_id, label)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS memory_facts (
            tenant TEXT NOT NULL, row_id TEXT NOT NULL, id TEXT NOT NULL,
            subject TEXT NOT NULL, predicate TEXT NOT NULL, object TEXT NOT NULL, session_id TEXT NOT NULL,
            valid_from INTEGER NOT NULL, valid_until INTEGER, recorded_at INTEGER NOT NULL, retracted_at INTEGER,
            PRIMARY KEY (tenant, row_id)
        )""",
        "CREATE INDEX IF NOT EXISTS memory_facts_by_subject ON memory_facts (tenant, subject, predicate)",
        "CREATE INDEX IF NOT EXISTS memory_facts_by_id ON memory_facts (tenant, id)",
        """CREATE TABLE IF NOT EXISTS memory_tombstones (
            tenant TEXT NOT NULL, scope_key TEXT NOT NULL, cutoff INTEGER NOT NULL,
            PRIMARY KEY (tenant, scope_key)
        ) WITHOUT ROWID""",
    ),
    (
        # Chroma's sidecar: the collection holding a tenant's episodes, when not the hashing one of old.
        """CREATE TABLE IF NOT EXISTS memory_vector_collections (
            tenant TEXT PRIMARY KEY, name TEXT NOT NULL
        ) WITHOUT ROWID""",
    ),
    (sql.SESSION_INDEX,),
)


SYNCHRONOUS = sqlite_backend.SYNCHRONOUS


WHAT = "memory database (SQLite)"


def _connect(path: str, synchronous: str = "normal", mmap_bytes: int = SQLITE_MMAP_BYTES) -> sqlite3.Connection:
    return sqlite_backend.connect(path, synchronous=synchronous, mmap_bytes=mmap_bytes)


def _sqlite_errors() -> contextlib.AbstractContextManager[None]:
    """A locked or busy file, or one the disk refuses → ``Unavailable``; a SQL bug stays INTERNAL."""
    return unavailable_on_outage(WHAT)


def migrate(conn: sqlite3.Connection) -> None:
    with _sqlite_errors():
        sqlite_backend.migrate(conn, MIGRATIONS)


def _cutoffs(conn: sqlite3.Connection, tenant: str, session_id: str) -> list[Micros | None]:
    rows = conn.execute(sql.TOMBSTONE_CUTOFFS, (tenant, *forgetting.write_scope_keys(session_id))).fetchall()
    return [int(r[0]) for r in rows]


def _reserve(conn: sqlite3.Connection, tenant: str, drafts: Sequence[EpisodeDraft], at: Micros) -> int:
    """Inside a write transaction: locks the tenant, refuses writes a Forget overtook, returns the first new seq."""
    (last,) = conn.execute(sql.ADVANCE_SEQ, (tenant, len(drafts))).fetchone()
    for session_id in {d.session_id for d in drafts}:
        forgetting.refuse_if_forgotten(_cutoffs(conn, tenant, session_id), at)
    return int(last) - len(drafts) + 1


class SQLiteStore:
    """``sqlite:///path/to/memory.db``."""

    def __init__(
        self,
        path: str | Path,
        embedder: Embedder | None = None,
        cache_episodes: int = DEFAULT_CACHE_EPISODES,
        synchronous: str = "normal",
        mmap_bytes: int = SQLITE_MMAP_BYTES,
        write_batch: int = sqlite_backend.WRITE_BATCH,
    ) -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, not {synchronous!r}")
        if mmap_bytes < 0:
            raise ValueError(f"mmap_bytes must be >= 0, not {mmap_bytes}")
        self._path = str(path)
        self._synchronous = synchronous
        self._mmap_bytes = mmap_bytes
        self._embedder = embedder or HashingEmbedder()
        self._writes = sqlite_backend.GroupWriter(
            lambda: _connect(self._path, self._synchronous, self._mmap_bytes), "memory-sqlite-writer", write_batch
        )
        self._scan_thread = ThreadPoolExecutor(1, thread_name_prefix="memory-sqlite-scan")
        self._scanner: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._recall = CachedRecall(self, self._embedder, IndexCache(cache_episodes))

    @property
    def recall_cache(self) -> IndexCache:
        return self._recall.cache

    async def start(self) -> None:
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        try:
            await self._writes.start()
            await self._writes.call(migrate)
            self._scanner = await self._on_scanner(lambda: _connect(self._path, mmap_bytes=self._mmap_bytes))
            self._reader = _connect(self._path, mmap_bytes=self._mmap_bytes)
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot open memory database {self._path}: {exc}") from exc

    async def close(self) -> None:
        await self._writes.close()
        if self._scanner is not None:
            await asyncio.get_running_loop().run_in_executor(self._scan_thread, self._scanner.close)
        if self._reader is not None:
            self._reader.close()
        self._scanner = self._reader = None
        self._scan_thread.shutdown(wait=True)

    # -- plumbing ----------------------------------------------------------

    @staticmethod
    def _conn(conn: sqlite3.Connection | None) -> sqlite3.Connection:
        if conn is None:
            raise Unavailable("memory store is not started")
        return conn

    async def _on_scanner(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._scan_thread, fn)

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Runs ``work`` on the writer thread, in its own savepoint of a shared transaction; returns once committed."""
        self._conn(self._writes.connection)
        with _sqlite_errors():
            return await self._writes.write(work)

    async def scan(self, statement: str, params: Sequence[Any]) -> list[Any]:
        conn = self._conn(self._scanner)

        def run() -> list[Any]:
            with _sqlite_errors():
                return conn.execute(statement, params).fetchall()

        return await self._on_scanner(run)

    def read(self, statement: str, params: Sequence[Any]) -> list[Any]:
        """A small indexed read, on the event loop (see the module docstring)."""
        with _sqlite_errors():
            return self._conn(self._reader).execute(statement, params).fetchall()

    # -- episodes ----------------------------------------------------------

    async def remember(self, tenant: str, draft: EpisodeDraft, at: Micros) -> Episode:
        return (await self.remember_many(tenant, [draft], at))[0]

    async def remember_many(self, tenant: str, drafts: Sequence[EpisodeDraft], at: Micros) -> list[Episode]:
        name = self._embedder.name
        embeddings = [to_bytes(v, name) for v in await self._embedder.embed_texts([d.text for d in drafts])]

        def work(conn: sqlite3.Connection) -> list[Episode]:
            stored = stamp(tenant, drafts, _reserve(conn, tenant, drafts, at), at)
            conn.executemany(
                sql.INSERT_EPISODE,
                [(*sql.episode_values(e), raw) for e, raw in zip(stored, embeddings, strict=True)],
            )
            return stored

        return await self.write(work) if drafts else []

    async def reserve_episode_seqs(self, tenant: str, drafts: Sequence[EpisodeDraft], at: Micros) -> int:
        """The first of ``len(drafts)`` new episode seqs, or ABORTED under a tombstone (for stores that
        keep episodes elsewhere: Chroma)."""
        return await self.write(lambda conn: _reserve(conn, tenant, drafts, at))

    async def bump_epoch(self, tenant: str) -> None:
        """Invalidates every process's cached recall index of the tenant."""
        await self.write(lambda conn: conn.execute(sql.BUMP_EPOCH, (tenant,)).fetchall())

    async def recall(self, tenant: str, query: RecallQuery) -> list[RecallHit]:
        return await self._recall.recall(tenant, query)

    async def probe(self, tenant: str) -> tuple[int, int]:
        rows = self.read(sql.PROBE, (tenant,))
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    async def load(self, tenant: str, after_seq: int) -> list[IndexedDoc]:
        params = (tenant, after_seq)
        rows = await self.scan(sql.EPISODES_AFTER, params) if after_seq == 0 else self.read(sql.EPISODES_AFTER, params)
        return [
            IndexedDoc(int(seq), session, f"{text_in}\n{text_out}", usable(raw, self._embedder))
            for seq, session, text_in, text_out, raw in rows
        ]

    # -- re-embedding (loomflow memory reembed) ---------------------------------

    async def tenants_after(self, after: str, limit: int) -> list[str]:
        return [row[0] for row in await self.scan(sql.TENANTS_AFTER, (after, limit))]

    async def reembed_page(self, tenant: str, after_seq: int, limit: int) -> tuple[int, int]:
        return await rewrite_stale(self, self._embedder, tenant, after_seq, limit)

    async def stale_episodes(self, tenant: str, after_seq: int, limit: int) -> tuple[list[tuple[int, str]], int]:
        rows = await self.scan(sql.EPISODE_VECTORS_PAGE, (tenant, after_seq, limit))
        stale = [(int(r[0]), f"{r[1]}\n{r[2]}") for r in rows if embedder_of(r[3]) != self._embedder.name]
        return stale, (int(rows[-1][0]) if len(rows) == limit else -1)

    async def store_vectors(self, tenant: str, vectors: Sequence[tuple[int, Vector]]) -> None:
        name = self._embedder.name
        params = [(to_bytes(v, name), tenant, seq) for seq, v in vectors]

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(sql.UPDATE_EMBEDDING, params)
            conn.execute(sql.BUMP_EPOCH, (tenant,))  # every process's cached index reloads the new vectors

        await self.write(work)

    async def probe_and_fetch(self, tenant: str, seqs: Sequence[int]) -> tuple[int, int, Mapping[int, Episode]]:
        epoch, top_seq = await self.probe(tenant)  # local reads: two of them cost less than a join
        rows = self.read(sql.episodes_by_seq(len(seqs)), (tenant, *seqs)) if seqs else []
        return epoch, top_seq, {episode.seq: episode for episode in map(sql.episode_from, rows)}

    async def get_episode(self, tenant: str, episode_id: str) -> Episode:
        rows = self.read(sql.EPISODE_BY_ID, (tenant, episode_id))
        if not rows:
            raise NotFound(f"episode {episode_id!r} not found")
        return sql.episode_from(rows[0])

    async def list_episodes(self, tenant: str, page: SessionPage) -> list[Episode]:
        return [sql.episode_from(r) for r in self.read(sql.SESSION_PAGE, sql.session_page_params(tenant, page))]

    # -- blocks --------------------------------------------------------------

    async def put_block(self, tenant: str, write: BlockWrite, at: Micros) -> Block:
        def work(conn: sqlite3.Connection) -> Block:
            conn.execute(sql.LOCK_TENANT, (tenant,))
            forgetting.refuse_if_forgotten(_cutoffs(conn, tenant, write.session_id), at)
            key = (tenant, write.session_id, write.label)
            row = conn.execute(sql.BLOCK_VERSION, key).fetchone()
            others = 0
            if write.max_tenant_bytes:  # under the tenant's lock: no concurrent write can slip past the cap
                others = int(conn.execute(sql.other_block_bytes(postgres=False), key).fetchone()[0])
            block = blocks.next_block(tenant, write, None if row is None else int(row[0]), at, others)
            conn.execute(sql.UPSERT_BLOCK, sql.block_values(block))
            return block

        return await self.write(work)

    async def get_block(self, tenant: str, session_id: str, label: str) -> Block:
        rows = self.read(sql.GET_BLOCK, (tenant, session_id, label))
        if not rows:
            raise blocks.block_not_found(label)
        return sql.block_from(rows[0])

    async def list_blocks(self, tenant: str, session_id: str | None) -> list[Block]:
        params = (tenant,) if session_id is None else (tenant, session_id)
        return [sql.block_from(r) for r in self.read(sql.blocks_query(session_id, postgres=False), params)]

    async def delete_block(self, tenant: str, session_id: str, label: str, expected_version: int | None) -> int:
        def work(conn: sqlite3.Connection) -> int:
            row = conn.execute(sql.BLOCK_VERSION, (tenant, session_id, label)).fetchone()
            version = blocks.check_delete(label, None if row is None else int(row[0]), expected_version)
            conn.execute(sql.DELETE_BLOCK, (tenant, session_id, label))
            return version

        return await self.write(work)

    # -- facts ---------------------------------------------------------------

    async def assert_fact(self, tenant: str, assertion: FactAssertion, at: Micros) -> AssertionResult:
        def work(conn: sqlite3.Connection) -> AssertionResult:
            conn.execute(sql.LOCK_TENANT, (tenant,))
            forgetting.refuse_if_forgotten(_cutoffs(conn, tenant, assertion.session_id), at)
            rows = conn.execute(sql.BELIEVED_FACTS, (tenant, assertion.subject, assertion.predicate)).fetchall()
            plan = facts.plan_assertion(tenant, [sql.fact_from(r) for r in rows], assertion, at)
            for row in plan.retract:
                conn.execute(sql.RETRACT_ROW, (at, tenant, row.row_id))
            for row in plan.insert:
                conn.execute(sql.INSERT_FACT, sql.fact_values(row))
            return AssertionResult(fact=plan.fact, superseded=plan.superseded)

        return await self.write(work)

    async def retract_fact(self, tenant: str, fact_id: str, at: Micros) -> Fact:
        def work(conn: sqlite3.Connection) -> Fact:
            rows = conn.execute(sql.RETRACT_FACT, (at, tenant, fact_id)).fetchall()
            if not rows:
                raise NotFound(f"fact {fact_id!r} not found")
            return min(map(sql.fact_from, rows), key=facts.answer_order)

        return await self.write(work)

    async def query_facts(self, tenant: str, query: FactQuery) -> list[Fact]:
        params: list[Any] = [tenant]
        params += [v for v in (query.subject, query.predicate) if v]
        if not query.include_history:
            params += [query.known_at, query.known_at, query.valid_at, query.valid_at]
        if query.after is not None:
            params += list(query.after)
        params.append(query.limit)
        statement = sql.facts_query(
            query.subject, query.predicate, query.include_history, postgres=False, after=query.after is not None
        )
        return [sql.fact_from(r) for r in self.read(statement, params)]

    # -- GDPR ----------------------------------------------------------------

    # -- retention (store/retention.py) --

    async def tenants_with_episodes_before(self, cutoff: Micros, after: str, limit: int) -> list[str]:
        return [r[0] for r in await self.scan(retention.TENANTS_WITH_EPISODES_BEFORE, (cutoff, after, limit))]

    async def delete_episodes_before(self, tenant: str, cutoff: Micros, limit: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            deleted: int = conn.execute(retention.DELETE_EPISODES_BEFORE, (tenant, tenant, cutoff, limit)).rowcount
            if deleted:
                conn.execute(sql.BUMP_EPOCH, (tenant,))  # every replica's recall index drops them
            return deleted

        return await self.write(work)

    async def forget(self, tenant: str, scope: ForgetScope, at: Micros) -> ForgetResult:
        tombstone = forgetting.tombstone_for(scope, at)

        def work(conn: sqlite3.Connection) -> ForgetResult:
            conn.execute(sql.BUMP_EPOCH, (tenant,))
            conn.execute(sql.PUT_TOMBSTONE, (tenant, tombstone.scope_key, tombstone.cutoff))
            params = sql.forget_params(tenant, tombstone.cutoff, scope.session_id)
            episodes, blocks_, facts_ = sql.forget_statements(scope.session_id)
            episodes_deleted = conn.execute(episodes, params).rowcount
            blocks_deleted = conn.execute(blocks_, params).rowcount
            fact_ids = {r[0] for r in conn.execute(facts_, params).fetchall()}
            return ForgetResult(episodes_deleted, blocks_deleted, len(fact_ids))

        return await self.write(work)

    async def export(self, tenant: str) -> AsyncIterator[ExportRecord]:
        after = 0
        while True:
            rows = await self.scan(sql.EPISODES_PAGE, (tenant, after, EXPORT_PAGE))
            for row in rows:
                episode = sql.episode_from(row)
                after = episode.seq
                yield episode
            if len(rows) < EXPORT_PAGE:
                break
        for row in await self.scan(sql.blocks_query(None, postgres=False), (tenant,)):
            yield sql.block_from(row)
        for row in await self.scan(sql.all_facts_query(postgres=False), (tenant,)):
            yield sql.fact_from(row)
