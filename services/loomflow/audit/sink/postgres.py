"""The Postgres sink (asyncpg): one transaction per group-commit batch.

Tables (prefixed ``audit_`` because services may share a database):

* ``audit_entries``: one row per entry, primary key ``(user_id, seq)``: a seq
  race between two writer processes fails the batch instead of forking a chain.
* ``audit_heads``: every chain's head, updated in the same transaction, so a
  checkpoint reads one row per tenant instead of scanning entries.
* ``audit_keys``: wrapped data keys; ``Forget`` deletes the tenant's rows.
* ``audit_checkpoints``, ``audit_meta`` (the schema's version: the kernel's migration runner).

A batch is acknowledged after its COMMIT; the pool's sessions force
``synchronous_commit = on`` so COMMIT means flushed to the WAL (unless the
server itself runs with ``fsync = off``, as throwaway test databases do).
Several writer processes may share the tables: the batch locks the data keys
it encrypted with (``FOR SHARE``), so a concurrent ``Forget`` either waits for
it or makes it fail with :class:`Conflict` and be retried under a new key.
To keep two deployments apart in one database, give each its own schema with
``?search_path=<schema>`` in the DSN.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection
from typing import Any

import asyncpg

from loomflow.audit import checkpoint as checkpoints
from loomflow.audit.crypto import PERIOD_KEY_ID_SIZE, key_id_of, period_key_id
from loomflow.audit.models import Batch, ChainReport, Checkpoint, Entry, Head, QueryFilter, WrappedKey
from loomflow.audit.sink.base import BadEntry, Conflict
from loomflow.audit.verify import LogVerifier, missing_chains, reclassify, suspects
from loomflow.kernel.backends import dsn as dsns
from loomflow.kernel.backends import migrations, postgres
from loomflow.kernel.backends.errors import unavailable_on_outage
from loomflow.kernel.config import ConfigError
from loomflow.kernel.errors import Unavailable

log = logging.getLogger("loomflow.audit")

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE IF NOT EXISTS audit_entries (
            user_id text NOT NULL,
            seq bigint NOT NULL,
            ts_us bigint NOT NULL,
            session_id text NOT NULL,
            run_id text NOT NULL,
            actor text NOT NULL,
            action text NOT NULL,
            payload bytea NOT NULL,
            decision_id text NOT NULL,
            prev_mac bytea NOT NULL,
            mac bytea NOT NULL,
            PRIMARY KEY (user_id, seq)
        );
        CREATE TABLE IF NOT EXISTS audit_heads (
            user_id text PRIMARY KEY,
            seq bigint NOT NULL,
            mac bytea NOT NULL
        );
        CREATE TABLE IF NOT EXISTS audit_keys (
            user_id text NOT NULL,
            key_id bytea NOT NULL,
            wrapped bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (user_id, key_id)
        );
        CREATE TABLE IF NOT EXISTS audit_checkpoints (
            checkpoint_id text PRIMARY KEY,
            created_us bigint NOT NULL,
            document text NOT NULL
        );
        CREATE INDEX IF NOT EXISTS audit_checkpoints_created ON audit_checkpoints (created_us);
        CREATE TABLE IF NOT EXISTS audit_meta (
            name text PRIMARY KEY,
            value text NOT NULL
        );
        """,
    ),
]

ENTRY_COLUMNS = (
    "user_id",
    "seq",
    "ts_us",
    "session_id",
    "run_id",
    "actor",
    "action",
    "payload",
    "decision_id",
    "prev_mac",
    "mac",
)
SELECT_ENTRIES = "SELECT " + ", ".join(ENTRY_COLUMNS) + " FROM audit_entries"
_VERIFY_FETCH = 20_000
VERIFY_STREAMS = 2


def row_entry(row: Any) -> Entry:
    """An entry from a row of ``SELECT_ENTRIES`` (positional: verification converts millions;
    asyncpg already returns bytea as bytes)."""
    user_id, seq, ts_us, session_id, run_id, actor, action, payload, decision_id, prev_mac, mac = row
    return Entry(seq, ts_us, user_id, session_id, run_id, actor, action, payload, decision_id, prev_mac, mac)


def entry_record(e: Entry) -> tuple[Any, ...]:
    return (
        e.user_id,
        e.seq,
        e.ts_us,
        e.session_id,
        e.run_id,
        e.actor,
        e.action,
        e.payload,
        e.decision_id,
        e.prev_mac,
        e.mac,
    )


SCHEMA = migrations.numbered(
    "audit", [sql for _, sql in MIGRATIONS], legacy=migrations.legacy_table("audit_migrations")
)
WHAT = "audit log (Postgres)"


async def migrate(conn: Any) -> None:
    """Applies the migrations not applied yet; safe to run from many processes at once."""
    await migrations.migrate(conn, SCHEMA)


_PERIOD_KEYS_BEFORE = f"octet_length(key_id) = {PERIOD_KEY_ID_SIZE} AND key_id >= $1 AND key_id < $2"
"""Period keys (length 5; a random pre-period id has 8 bytes) of the days in [$1, $2)."""


class PostgresSink:
    def __init__(self, dsn: str, *, readonly: bool = False, pool_size: int = 4, migrate: bool = True) -> None:
        self._dsn = dsn
        self._migrate = migrate
        self.readonly = readonly
        self._pool_size = pool_size
        self._pool: Any = None
        self.description = dsns.redact(dsn)  # never the password

    async def open(self) -> None:
        try:
            self._pool = await postgres.open_pool(
                self._dsn,
                WHAT,
                max_size=self._pool_size,
                connect_timeout=60,
                server_settings={"synchronous_commit": "on"} if not self.readonly else None,
            )
        except (Unavailable, ConfigError, ValueError) as exc:
            message = exc.message if isinstance(exc, Unavailable) else dsns.redact(str(exc))
            raise ConfigError(f"audit: cannot connect to {self.description}: {message}") from None
        async with self._connection() as conn:
            if not self.readonly:
                await migrations.migrate_or_check(conn, SCHEMA, apply=self._migrate)
            exists = await conn.fetchval("SELECT to_regclass('audit_entries') IS NOT NULL")
        if not exists:
            await self.close()
            raise ConfigError(f"no audit log at {self.description} (table audit_entries does not exist)")

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection; an outage (lost connection, read-only standby…) raises ``Unavailable``."""
        with unavailable_on_outage(WHAT):
            async with self._pool.acquire() as conn:
                yield conn

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def init_meta(self, values: dict[str, str]) -> dict[str, str]:
        async with self._connection() as conn:
            if not self.readonly:
                await conn.executemany(
                    "INSERT INTO audit_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                    list(values.items()),
                )
            rows = await conn.fetch("SELECT name, value FROM audit_meta")
        return {r["name"]: r["value"] for r in rows}

    # -- writing ----------------------------------------------------------

    async def write_batch(self, batch: Batch) -> None:
        heads: dict[str, Entry] = {}
        used_keys: dict[str, set[bytes]] = {}
        for entry in batch.entries:
            heads[entry.user_id] = entry
            key_id = key_id_of(entry.payload)
            if key_id is not None:
                used_keys.setdefault(entry.user_id, set()).add(key_id)
        new_keys = {(k.tenant, k.key_id) for k in batch.new_keys}
        try:
            async with self._connection() as conn, conn.transaction():
                await self._lock_keys(conn, used_keys, new_keys)
                if batch.new_keys:
                    await conn.copy_records_to_table(
                        "audit_keys",
                        records=[(k.tenant, k.key_id, k.wrapped) for k in batch.new_keys],
                        columns=("user_id", "key_id", "wrapped"),
                    )
                await conn.copy_records_to_table(
                    "audit_entries", records=[entry_record(e) for e in batch.entries], columns=ENTRY_COLUMNS
                )
                await conn.execute(
                    "INSERT INTO audit_heads (user_id, seq, mac) "
                    "SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[]) "
                    "ON CONFLICT (user_id) DO UPDATE SET seq = EXCLUDED.seq, mac = EXCLUDED.mac "
                    "WHERE audit_heads.seq < EXCLUDED.seq",
                    list(heads),
                    [e.seq for e in heads.values()],
                    [e.mac for e in heads.values()],
                )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(heads, f"another writer appended to these chains: {exc}") from None
        except asyncpg.DataError as exc:  # SQLSTATE class 22: a value Postgres cannot store, e.g. a NUL in text
            raise BadEntry(f"an entry cannot be stored: {exc}") from None
        except asyncpg.PostgresError as exc:  # anything else the server refused (outages raised Unavailable): retry
            raise Unavailable(f"audit: {self.description} failed: {dsns.redact(str(exc))}") from exc

    async def _lock_keys(self, conn: Any, used: dict[str, set[bytes]], new: set[tuple[str, bytes]]) -> None:
        """Locks the existing data keys the batch encrypted with; Conflict if Forget destroyed one."""
        wanted = [(t, k) for t, ids in used.items() for k in ids if (t, k) not in new]
        if not wanted:
            return
        rows = await conn.fetch(
            "SELECT k.user_id, k.key_id FROM audit_keys k "
            "JOIN unnest($1::text[], $2::bytea[]) AS w(user_id, key_id) USING (user_id, key_id) "
            "FOR SHARE OF k",
            [t for t, _ in wanted],
            [k for _, k in wanted],
        )
        found = {(r["user_id"], bytes(r["key_id"])) for r in rows}
        gone = {t for t, k in wanted if (t, k) not in found}
        if gone:
            raise Conflict(gone, "a data key was destroyed by Forget in another process")

    async def destroy_keys(self, tenant: str) -> int:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM audit_keys WHERE user_id = $1", tenant)
            count: int = await conn.fetchval(
                "SELECT count(*) FROM audit_entries WHERE user_id = $1 AND octet_length(payload) > 0", tenant
            )
        return count

    async def tenants_with_keys_before(self, day: int, after: str, limit: int) -> list[str]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT DISTINCT user_id FROM audit_keys WHERE {_PERIOD_KEYS_BEFORE} AND user_id > $3 "
                "ORDER BY user_id LIMIT $4",
                period_key_id(0),
                period_key_id(day),
                after,
                limit,
            )
        return [r["user_id"] for r in rows]

    async def destroy_keys_before(self, tenant: str, day: int, limit: int) -> int:
        async with self._connection() as conn:
            deleted = await conn.fetch(
                "DELETE FROM audit_keys WHERE (user_id, key_id) IN ("
                f"SELECT user_id, key_id FROM audit_keys WHERE {_PERIOD_KEYS_BEFORE} AND user_id = $3 "
                "ORDER BY key_id LIMIT $4) RETURNING key_id",
                period_key_id(0),
                period_key_id(day),
                tenant,
                limit,
            )
        return len(deleted)

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO audit_checkpoints (checkpoint_id, created_us, document) VALUES ($1, $2, $3)",
                checkpoint.checkpoint_id,
                checkpoint.created_us,
                checkpoints.to_json(checkpoint),
            )

    # -- reading ----------------------------------------------------------

    async def load_heads(self, tenants: Collection[str]) -> dict[str, Head]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT user_id, seq, mac FROM audit_heads WHERE user_id = ANY($1::text[])", list(tenants)
            )
        return {r["user_id"]: Head(r["seq"], bytes(r["mac"])) for r in rows}

    async def all_heads(self) -> dict[str, Head]:
        async with self._connection() as conn:
            rows = await conn.fetch("SELECT user_id, seq, mac FROM audit_heads")
        return {r["user_id"]: Head(r["seq"], bytes(r["mac"])) for r in rows}

    async def load_keys(self, tenants: Collection[str]) -> dict[str, list[WrappedKey]]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT user_id, key_id, wrapped FROM audit_keys WHERE user_id = ANY($1::text[]) "
                "ORDER BY created_at, key_id",
                list(tenants),
            )
        found: dict[str, list[WrappedKey]] = {t: [] for t in tenants}
        for r in rows:
            found[r["user_id"]].append(WrappedKey(r["user_id"], bytes(r["key_id"]), bytes(r["wrapped"])))
        return found

    async def latest_checkpoint(self) -> Checkpoint | None:
        async with self._connection() as conn:
            document = await conn.fetchval(
                "SELECT document FROM audit_checkpoints ORDER BY created_us DESC, checkpoint_id DESC LIMIT 1"
            )
        return None if document is None else checkpoints.from_json(document)

    async def read(self, query: QueryFilter) -> list[Entry]:
        conditions: list[str] = ["seq > $1"]
        args: list[Any] = [query.after_seq]
        for column in ("user_id", "session_id", "run_id", "action"):
            value = query.tenant if column == "user_id" else getattr(query, column)
            if value:
                args.append(value)
                conditions.append(f"{column} = ${len(args)}")
        for bound, operator in ((query.from_us, ">="), (query.to_us, "<")):
            if bound:
                args.append(bound)
                conditions.append(f"ts_us {operator} ${len(args)}")
        args.append(query.limit)
        sql = f"{SELECT_ENTRIES} WHERE {' AND '.join(conditions)} ORDER BY user_id, seq LIMIT ${len(args)}"
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *args)
        return [row_entry(r) for r in rows]

    async def macs_at(self, positions: Collection[tuple[str, int]]) -> dict[tuple[str, int], bytes]:
        pairs = list(positions)
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT e.user_id, e.seq, e.mac FROM audit_entries e "
                "JOIN unnest($1::text[], $2::bigint[]) AS w(user_id, seq) USING (user_id, seq)",
                [t for t, _ in pairs],
                [s for _, s in pairs],
            )
        return {(r["user_id"], r["seq"]): bytes(r["mac"]) for r in rows}

    async def _stream(self, only: str | None, part: int = 0) -> AsyncIterator[list[Entry]]:
        """Entries ordered by (user_id, seq), in chunks, from one snapshot: one tenant's, or every
        tenant's whose hash falls in ``part`` of VERIFY_STREAMS."""
        async with self._connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            if only is None:
                cursor = await conn.cursor(
                    f"{SELECT_ENTRIES} WHERE (hashtext(user_id) & 2147483647) % $1 = $2 ORDER BY user_id, seq",
                    VERIFY_STREAMS,
                    part,
                )
            else:
                cursor = await conn.cursor(f"{SELECT_ENTRIES} WHERE user_id = $1 ORDER BY seq", only)
            while rows := await cursor.fetch(_VERIFY_FETCH):
                yield [row_entry(r) for r in rows]

    async def _verify_stream(
        self, key: bytes, checkpoint: Checkpoint | None, only: str | None, part: int
    ) -> list[ChainReport]:
        verifier = LogVerifier(key, checkpoint, None if only is None else [only])
        async for chunk in self._stream(only, part):
            for entry in chunk:
                verifier.feed(entry)
        return verifier.finish()

    async def verify(
        self, key: bytes, checkpoint: Checkpoint | None, only: str | None
    ) -> tuple[list[ChainReport], list[str]]:
        if only is not None:
            reports = await self._verify_stream(key, checkpoint, only, 0)
        else:
            # Several streams, each a disjoint set of whole chains: the server reads the next rows
            # while this process verifies the previous ones (measured 1.5x on 2 cores).
            parts = await asyncio.gather(
                *(self._verify_stream(key, checkpoint, None, p) for p in range(VERIFY_STREAMS))
            )
            reports = sorted((r for part in parts for r in part if r.tenant is not None), key=lambda r: r.tenant or "")
            if checkpoint is not None:
                reports.extend(missing_chains(checkpoint, reports))
        wanted = suspects(reports)
        if wanted:
            async with self._connection() as conn:
                rows = await conn.fetch(
                    "SELECT mac, user_id, seq FROM audit_entries WHERE mac = ANY($1::bytea[])", list(wanted)
                )
            owners: dict[bytes, list[tuple[str, int]]] = {}
            for r in rows:
                owners.setdefault(bytes(r["mac"]), []).append((r["user_id"], r["seq"]))
            reports = reclassify(key, reports, owners)
        return reports, []
