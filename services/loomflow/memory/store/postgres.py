"""Postgres backend: asyncpg pool, idempotent migrations, pgvector when the server has it.

Tables are prefixed ``memory_`` (services may share one database) and every
primary key and index starts with the tenant. Every write first locks the
tenant's row in ``memory_tenants`` (see :data:`sql.LOCK_TENANT`), so writes and
Forgets of one tenant are serialised and a write always sees the tombstone of
a Forget that committed before it; other tenants never wait.

Vectors: every episode's vector is stored tagged with its embedder and dimension
(``embedding``, see :func:`~loomflow.memory.recall.embedding.to_bytes`). When
``CREATE EXTENSION vector`` succeeds, episodes also get a ``vector(<dim>)``
column for the embedder's dimension (``embedding_vector`` for 256, as before;
``embedding_vector_<dim>`` otherwise), an ``embedder`` column, and an HNSW index
(cosine) per column; Recall then asks Postgres for the tenant's nearest episodes
*of the same embedder* (a vector of another embedder is never compared). Otherwise (as on a stock Debian Postgres) the
exact per-tenant scan of the cached index ranks them. Either way BM25 runs on
the in-process per-tenant index, kept current by the (epoch, seq) probe.

Lost connections, refused connects, timeouts and a read-only standby raise ``Unavailable``
(:mod:`loomflow.kernel.backends.errors`); migrations run through the kernel's runner.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import asyncpg
import numpy as np

from loomflow.kernel.backends import migrations, postgres
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
from loomflow.memory.recall.embedding import (
    Embedder,
    HashingEmbedder,
    Vector,
    embedder_of,
    to_bytes,
    usable,
)
from loomflow.memory.recall.engine import CachedRecall
from loomflow.memory.recall.index import IndexedDoc
from loomflow.memory.recall.reembed import rewrite_stale
from loomflow.memory.store import retention, sql
from loomflow.memory.store.sql import numbered as q

log = logging.getLogger("loomflow.memory.postgres")

EXPORT_PAGE = 500
WHAT = "memory database (Postgres)"

SCHEMA = migrations.numbered(
    "memory",
    (
        (
            """CREATE TABLE IF NOT EXISTS memory_tenants (
                tenant TEXT PRIMARY KEY, epoch BIGINT NOT NULL, seq BIGINT NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS memory_episodes (
                tenant TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL, session_id TEXT NOT NULL,
                input TEXT NOT NULL, output TEXT NOT NULL, metadata TEXT NOT NULL, run_id TEXT NOT NULL,
                created_at BIGINT NOT NULL, embedding BYTEA,
                PRIMARY KEY (tenant, seq)
            )""",
            "CREATE UNIQUE INDEX IF NOT EXISTS memory_episodes_by_id ON memory_episodes (tenant, id)",
            """CREATE TABLE IF NOT EXISTS memory_blocks (
                tenant TEXT NOT NULL, session_id TEXT NOT NULL, label TEXT NOT NULL, content TEXT NOT NULL,
                version BIGINT NOT NULL, updated_at BIGINT NOT NULL,
                PRIMARY KEY (tenant, session_id, label)
            )""",
            """CREATE TABLE IF NOT EXISTS memory_facts (
                tenant TEXT NOT NULL, row_id TEXT NOT NULL, id TEXT NOT NULL,
                subject TEXT NOT NULL, predicate TEXT NOT NULL, object TEXT NOT NULL, session_id TEXT NOT NULL,
                valid_from BIGINT NOT NULL, valid_until BIGINT, recorded_at BIGINT NOT NULL, retracted_at BIGINT,
                PRIMARY KEY (tenant, row_id)
            )""",
            "CREATE INDEX IF NOT EXISTS memory_facts_by_subject ON memory_facts (tenant, subject, predicate)",
            "CREATE INDEX IF NOT EXISTS memory_facts_by_id ON memory_facts (tenant, id)",
            """CREATE TABLE IF NOT EXISTS memory_tombstones (
                tenant TEXT NOT NULL, scope_key TEXT NOT NULL, cutoff BIGINT NOT NULL,
                PRIMARY KEY (tenant, scope_key)
            )""",
        ),
        sql.SESSION_INDEX,
    ),
    legacy=migrations.legacy_table("memory_schema_migrations"),  # releases before the kernel's runner
)

PGVECTOR_DDL = (
    "ALTER TABLE memory_episodes ADD COLUMN IF NOT EXISTS embedder TEXT",
    "ALTER TABLE memory_episodes ADD COLUMN IF NOT EXISTS {column} vector({dim})",
    "CREATE INDEX IF NOT EXISTS memory_episodes_hnsw{suffix} ON memory_episodes "
    "USING hnsw ({column} vector_cosine_ops)",
)


def vector_column(dim: int) -> str:
    """The pgvector column of a dimension (the 256 one keeps the name it had before dimensions varied)."""
    return "embedding_vector" if dim == 256 else f"embedding_vector_{dim}"


def _insert_with_vector(column: str) -> str:
    return (
        f"INSERT INTO memory_episodes ({sql.EPISODE_COLUMNS}, embedding, embedder, {column}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?::vector)"
    )


async def has_vector_column(conn: asyncpg.Connection, dim: int) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'memory_episodes' AND column_name = $1",
        vector_column(dim),
    )
    return found is not None


async def enable_pgvector(conn: asyncpg.Connection, dim: int) -> bool:
    """Adds the vector column and HNSW index when the extension can be created; False otherwise."""
    async with conn.transaction():
        await conn.execute(migrations.LOCK)
        try:
            async with conn.transaction():  # a savepoint: a missing extension must not abort the rest
                await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except asyncpg.PostgresError as exc:
            log.info("pgvector unavailable (%s): recall uses an exact per-tenant scan", exc)
            return False
        column = vector_column(dim)
        for statement in PGVECTOR_DDL:
            await conn.execute(statement.format(dim=dim, column=column, suffix=column.removeprefix("embedding_vector")))
    return True


async def _refuse_if_forgotten(conn: asyncpg.Connection, tenant: str, session_id: str, at: Micros) -> None:
    """Call with the tenant's row locked, so no Forget can commit between this check and the write."""
    keys = forgetting.write_scope_keys(session_id)
    forgetting.refuse_if_forgotten([r[0] for r in await conn.fetch(q(sql.TOMBSTONE_CUTOFFS), tenant, *keys)], at)


def _vector_literal(vector: Vector) -> str:
    return "[" + ",".join(f"{x:.6g}" for x in vector.tolist()) + "]"


class PostgresStore:
    def __init__(
        self,
        dsn: str,
        embedder: Embedder | None = None,
        cache_episodes: int = 2_000_000,
        pool_size: int = 10,
        connect_timeout: float = 5.0,
        migrate: bool = True,
    ) -> None:
        self._dsn = dsn
        self._migrate = migrate
        self._embedder = embedder or HashingEmbedder()
        self._pool_size = pool_size
        self._timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._pgvector = False
        self._column = ""
        self._cache = IndexCache(cache_episodes)
        self._recall = CachedRecall(self, self._embedder, self._cache)

    @property
    def vector_search(self) -> str:
        """``pgvector`` (HNSW nearest neighbours) or ``exact`` (per-tenant scan in process)."""
        return "pgvector" if self._pgvector else "exact"

    @property
    def recall_cache(self) -> IndexCache:
        return self._cache

    async def start(self) -> None:
        self._pool = await postgres.open_pool(
            self._dsn, WHAT, max_size=self._pool_size, connect_timeout=self._timeout, command_timeout=30
        )
        with unavailable_on_outage(WHAT):
            async with self._pool.acquire() as conn:
                await migrations.migrate_or_check(conn, SCHEMA, apply=self._migrate)
                if self._migrate:
                    self._pgvector = await enable_pgvector(conn, self._embedder.dim)
                else:  # no DDL: use the vector column `loomflow migrate` added, if it could
                    self._pgvector = await has_vector_column(conn, self._embedder.dim)
        if self._pgvector:
            self._column = vector_column(self._embedder.dim)
            self._recall = CachedRecall(self, self._embedder, self._cache, nearest=self)
            await self._backfill_vectors()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- plumbing ----------------------------------------------------------

    def _pool_or_fail(self) -> asyncpg.Pool:
        if self._pool is None:
            raise Unavailable("memory store is not started")
        return self._pool

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        with unavailable_on_outage(WHAT):
            async with self._pool_or_fail().acquire() as conn, conn.transaction():
                yield conn

    async def _fetch(self, statement: str, *params: Any) -> list[asyncpg.Record]:
        with unavailable_on_outage(WHAT):
            rows: list[asyncpg.Record] = await self._pool_or_fail().fetch(q(statement), *params)
            return rows

    async def _backfill_vectors(self) -> None:
        """Episodes whose stored vector is this embedder's but not yet in its pgvector column get it filled in
        (stored before pgvector was installed, or before the ``embedder`` column existed)."""
        after: tuple[str, int] = ("", 0)
        while True:
            rows = await self._fetch(
                "SELECT tenant, seq, embedding FROM memory_episodes WHERE (tenant, seq) > (?, ?) "
                f"AND embedding IS NOT NULL AND (embedder IS NULL OR (embedder = ? AND {self._column} IS NULL)) "
                "ORDER BY tenant, seq LIMIT 500",
                *after,
                self._embedder.name,
            )
            if not rows:
                return
            after = (rows[-1][0], rows[-1][1])
            await self._put_vectors([(r[0], int(r[1]), bytes(r[2])) for r in rows])

    async def _put_vectors(self, rows: Sequence[tuple[str, int, bytes]]) -> None:
        """Writes (tenant, seq, stored vector) rows: the tagged bytes, and the pgvector column when it is
        this embedder's vector (another embedder's stays out of the column: never compared)."""
        async with self._transaction() as conn:
            if not self._pgvector:
                await conn.executemany(q(sql.UPDATE_EMBEDDING), [(raw, t, seq) for t, seq, raw in rows])
                return
            values = []
            for tenant, seq, raw in rows:
                vector = usable(raw, self._embedder)
                literal = None if vector is None else _vector_literal(vector.astype(np.float32))
                values.append((tenant, seq, raw, embedder_of(raw), literal))
            await conn.executemany(
                f"UPDATE memory_episodes SET embedding = $3, embedder = $4, {self._column} = $5::vector "
                "WHERE tenant = $1 AND seq = $2",
                values,
            )

    # -- episodes ----------------------------------------------------------

    async def remember(self, tenant: str, draft: EpisodeDraft, at: Micros) -> Episode:
        return (await self.remember_many(tenant, [draft], at))[0]

    async def remember_many(self, tenant: str, drafts: Sequence[EpisodeDraft], at: Micros) -> list[Episode]:
        if not drafts:
            return []
        vectors = await self._embedder.embed_texts([d.text for d in drafts])
        name = self._embedder.name
        insert = _insert_with_vector(self._column) if self._pgvector else sql.INSERT_EPISODE
        async with self._transaction() as conn:
            last = await conn.fetchval(q(sql.ADVANCE_SEQ), tenant, len(drafts))  # locks the tenant row
            for session_id in {d.session_id for d in drafts}:
                await _refuse_if_forgotten(conn, tenant, session_id, at)
            stored = stamp(tenant, drafts, int(last) - len(drafts) + 1, at)
            rows = [
                (*sql.episode_values(e), to_bytes(v, name), *((name, _vector_literal(v)) if self._pgvector else ()))
                for e, v in zip(stored, vectors, strict=True)
            ]
            await conn.executemany(q(insert), rows)
        return stored

    async def recall(self, tenant: str, query: RecallQuery) -> list[RecallHit]:
        return await self._recall.recall(tenant, query)

    async def probe(self, tenant: str) -> tuple[int, int]:
        rows = await self._fetch(sql.PROBE, tenant)
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    async def load(self, tenant: str, after_seq: int) -> list[IndexedDoc]:
        rows = await self._fetch(sql.EPISODES_AFTER, tenant, after_seq)
        return [
            IndexedDoc(int(seq), session, f"{text_in}\n{text_out}", usable(raw, self._embedder))
            for seq, session, text_in, text_out, raw in rows
        ]

    # -- re-embedding (loomflow memory reembed) ---------------------------------

    async def tenants_after(self, after: str, limit: int) -> list[str]:
        return [
            row[0]
            for row in await self._fetch(
                'SELECT tenant FROM memory_tenants WHERE tenant COLLATE "C" > ? ORDER BY tenant COLLATE "C" LIMIT ?',
                after,
                limit,
            )
        ]

    async def reembed_page(self, tenant: str, after_seq: int, limit: int) -> tuple[int, int]:
        return await rewrite_stale(self, self._embedder, tenant, after_seq, limit)

    async def stale_episodes(self, tenant: str, after_seq: int, limit: int) -> tuple[list[tuple[int, str]], int]:
        rows = await self._fetch(sql.EPISODE_VECTORS_PAGE, tenant, after_seq, limit)
        stale = [(int(r[0]), f"{r[1]}\n{r[2]}") for r in rows if embedder_of(r[3]) != self._embedder.name]
        return stale, (int(rows[-1][0]) if len(rows) == limit else -1)

    async def store_vectors(self, tenant: str, vectors: Sequence[tuple[int, Vector]]) -> None:
        name = self._embedder.name
        await self._put_vectors([(tenant, seq, to_bytes(v, name)) for seq, v in vectors])
        await self._fetch(sql.BUMP_EPOCH, tenant)  # every process's cached index reloads the new vectors

    async def probe_and_fetch(self, tenant: str, seqs: Sequence[int]) -> tuple[int, int, Mapping[int, Episode]]:
        """One statement, one snapshot: the tenant's (epoch, seq) and the episodes asked for."""
        rows = await self._fetch(
            f"SELECT t.epoch, t.seq, {', '.join('e.' + c.strip() for c in sql.EPISODE_COLUMNS.split(','))} "
            "FROM (SELECT ?::text AS tenant) AS k "
            "LEFT JOIN memory_tenants AS t ON t.tenant = k.tenant "
            "LEFT JOIN memory_episodes AS e ON e.tenant = k.tenant AND e.seq = ANY(?::bigint[])",
            tenant,
            list(seqs),
        )
        first = rows[0]
        records = {int(r[3]): sql.episode_from(tuple(r)[2:]) for r in rows if r[3] is not None}
        return int(first[0] or 0), int(first[1] or 0), records

    async def nearest(self, tenant: str, vector: Vector, session_id: str | None, count: int) -> Mapping[int, float]:
        """The tenant's nearest episodes by cosine, from the HNSW index when the planner picks it."""
        session = "" if session_id is None else " AND session_id = ?"
        literal = _vector_literal(vector)
        params: list[Any] = [literal, tenant, *([] if session_id is None else [session_id])]
        params += [self._embedder.name, literal, count]
        column = self._column
        rows = await self._fetch(  # ORDER BY the distance operator itself, so the HNSW index can serve it
            f"SELECT seq, 1 - ({column} <=> ?::vector) FROM memory_episodes "
            f"WHERE tenant = ?{session} AND embedder = ? AND {column} IS NOT NULL "
            f"ORDER BY {column} <=> ?::vector LIMIT ?",
            *params,
        )
        return {int(seq): float(similarity) for seq, similarity in rows}

    async def get_episode(self, tenant: str, episode_id: str) -> Episode:
        rows = await self._fetch(sql.EPISODE_BY_ID, tenant, episode_id)
        if not rows:
            raise NotFound(f"episode {episode_id!r} not found")
        return sql.episode_from(rows[0])

    async def list_episodes(self, tenant: str, page: SessionPage) -> list[Episode]:
        return [
            sql.episode_from(r) for r in await self._fetch(sql.SESSION_PAGE, *sql.session_page_params(tenant, page))
        ]

    # -- blocks --------------------------------------------------------------

    async def put_block(self, tenant: str, write: BlockWrite, at: Micros) -> Block:
        async with self._transaction() as conn:
            await conn.execute(q(sql.LOCK_TENANT), tenant)
            await _refuse_if_forgotten(conn, tenant, write.session_id, at)
            current = await conn.fetchval(q(sql.BLOCK_VERSION), tenant, write.session_id, write.label)
            others = 0
            if write.max_tenant_bytes:  # the tenant's row lock (LOCK_TENANT) serialises its writes
                key = (tenant, write.session_id, write.label)
                others = int(await conn.fetchval(q(sql.other_block_bytes(postgres=True)), *key))
            block = blocks.next_block(tenant, write, None if current is None else int(current), at, others)
            await conn.execute(q(sql.UPSERT_BLOCK), *sql.block_values(block))
        return block

    async def get_block(self, tenant: str, session_id: str, label: str) -> Block:
        rows = await self._fetch(sql.GET_BLOCK, tenant, session_id, label)
        if not rows:
            raise blocks.block_not_found(label)
        return sql.block_from(rows[0])

    async def list_blocks(self, tenant: str, session_id: str | None) -> list[Block]:
        params = (tenant,) if session_id is None else (tenant, session_id)
        return [sql.block_from(r) for r in await self._fetch(sql.blocks_query(session_id, postgres=True), *params)]

    async def delete_block(self, tenant: str, session_id: str, label: str, expected_version: int | None) -> int:
        async with self._transaction() as conn:
            await conn.execute(q(sql.LOCK_TENANT), tenant)
            current = await conn.fetchval(q(sql.BLOCK_VERSION), tenant, session_id, label)
            version = blocks.check_delete(label, None if current is None else int(current), expected_version)
            await conn.execute(q(sql.DELETE_BLOCK), tenant, session_id, label)
        return version

    # -- facts ---------------------------------------------------------------

    async def assert_fact(self, tenant: str, assertion: FactAssertion, at: Micros) -> AssertionResult:
        async with self._transaction() as conn:
            await conn.execute(q(sql.LOCK_TENANT), tenant)
            await _refuse_if_forgotten(conn, tenant, assertion.session_id, at)
            rows = await conn.fetch(q(sql.BELIEVED_FACTS), tenant, assertion.subject, assertion.predicate)
            plan = facts.plan_assertion(tenant, [sql.fact_from(r) for r in rows], assertion, at)
            if plan.retract:
                await conn.executemany(q(sql.RETRACT_ROW), [(at, tenant, r.row_id) for r in plan.retract])
            if plan.insert:
                await conn.executemany(q(sql.INSERT_FACT), [sql.fact_values(r) for r in plan.insert])
        return AssertionResult(fact=plan.fact, superseded=plan.superseded)

    async def retract_fact(self, tenant: str, fact_id: str, at: Micros) -> Fact:
        async with self._transaction() as conn:
            await conn.execute(q(sql.LOCK_TENANT), tenant)
            rows = await conn.fetch(q(sql.RETRACT_FACT), at, tenant, fact_id)
        if not rows:
            raise NotFound(f"fact {fact_id!r} not found")
        return min(map(sql.fact_from, rows), key=facts.answer_order)

    async def query_facts(self, tenant: str, query: FactQuery) -> list[Fact]:
        params: list[Any] = [tenant, *(v for v in (query.subject, query.predicate) if v)]
        if not query.include_history:
            params += [query.known_at, query.known_at, query.valid_at, query.valid_at]
        if query.after is not None:
            params += list(query.after)
        params.append(query.limit)
        statement = sql.facts_query(
            query.subject, query.predicate, query.include_history, postgres=True, after=query.after is not None
        )
        return [sql.fact_from(r) for r in await self._fetch(statement, *params)]

    # -- GDPR ----------------------------------------------------------------

    # -- retention (store/retention.py) --

    async def tenants_with_episodes_before(self, cutoff: Micros, after: str, limit: int) -> list[str]:
        return [r[0] for r in await self._fetch(retention.TENANTS_WITH_EPISODES_BEFORE, cutoff, after, limit)]

    async def delete_episodes_before(self, tenant: str, cutoff: Micros, limit: int) -> int:
        async with self._transaction() as conn:
            deleted = _deleted_count(
                await conn.execute(q(retention.DELETE_EPISODES_BEFORE), tenant, tenant, cutoff, limit)
            )
            if deleted:
                await conn.execute(q(sql.BUMP_EPOCH), tenant)  # every replica's recall index drops them
        return deleted

    async def forget(self, tenant: str, scope: ForgetScope, at: Micros) -> ForgetResult:
        tombstone = forgetting.tombstone_for(scope, at)
        params = sql.forget_params(tenant, tombstone.cutoff, scope.session_id)
        episodes, blocks_, facts_ = (q(s) for s in sql.forget_statements(scope.session_id))
        async with self._transaction() as conn:
            await conn.execute(q(sql.BUMP_EPOCH), tenant)
            await conn.execute(q(sql.PUT_TOMBSTONE), tenant, tombstone.scope_key, tombstone.cutoff)
            episodes_deleted = _deleted_count(await conn.execute(episodes, *params))
            blocks_deleted = _deleted_count(await conn.execute(blocks_, *params))
            fact_ids = {r[0] for r in await conn.fetch(facts_, *params)}
        return ForgetResult(episodes_deleted, blocks_deleted, len(fact_ids))

    async def export(self, tenant: str) -> AsyncIterator[ExportRecord]:
        after = 0
        while True:
            rows = await self._fetch(sql.EPISODES_PAGE, tenant, after, EXPORT_PAGE)
            for row in rows:
                episode = sql.episode_from(row)
                after = episode.seq
                yield episode
            if len(rows) < EXPORT_PAGE:
                break
        for row in await self._fetch(sql.blocks_query(None, postgres=True), tenant):
            yield sql.block_from(row)
        for row in await self._fetch(sql.all_facts_query(postgres=True), tenant):
            yield sql.fact_from(row)


def _deleted_count(status: str) -> int:
    """asyncpg's command tag, e.g. ``DELETE 3``."""
    return int(status.rsplit(" ", 1)[-1])
