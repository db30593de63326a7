"""The production agent store: Postgres through an asyncpg pool, shared by every Agent replica."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from loomflow.agent.store import rows, sql
from loomflow.agent.store.base import ErasureRow, Micros, PausedRecord, StoredDefinition
from loomflow.kernel.backends import migrations, postgres
from loomflow.kernel.backends.errors import unavailable_on_outage
from loomflow.kernel.errors import Unavailable

WHAT = "agent store (Postgres)"
# Releases before the kernel's runner kept no version: a schema with all of these objects is at version 1.
SCHEMA = migrations.numbered(
    "agent", [sql.SCHEMA], legacy=migrations.legacy_objects(re.findall(r"IF NOT EXISTS (\w+)", " ".join(sql.SCHEMA)))
)


def q(statement: str) -> str:
    return sql.numbered(statement)


class PostgresAgentStore:
    def __init__(self, dsn: str, pool_size: int = 5, *, migrate: bool = True) -> None:
        self._dsn = dsn
        self._migrate = migrate
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        self._pool = await postgres.open_pool(self._dsn, WHAT, max_size=self._pool_size)
        with unavailable_on_outage(WHAT):
            async with self._pool.acquire() as conn:
                await migrations.migrate_or_check(conn, SCHEMA, apply=self._migrate)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise Unavailable("agent store is not started")
        with unavailable_on_outage(WHAT):
            async with self._pool.acquire() as conn, conn.transaction():
                yield conn

    async def _row(self, statement: str, *params: Any) -> Any:
        async with self._transaction() as conn:
            return await conn.fetchrow(q(statement), *params)

    async def put_definition(self, name: str, body: str, at: Micros) -> StoredDefinition:
        return rows.definition_from(await self._row(sql.UPSERT_DEFINITION, name, body, at))

    async def get_definition(self, name: str) -> StoredDefinition:
        row = await self._row(sql.GET_DEFINITION, name)
        if row is None:
            raise rows.agent_not_found(name)
        return rows.definition_from(row)

    async def list_definitions(self, after: str, limit: int) -> list[StoredDefinition]:
        async with self._transaction() as conn:
            found = await conn.fetch(
                q(sql.LIST_DEFINITIONS.replace("ORDER BY name", 'ORDER BY name COLLATE "C"')), after, limit
            )
        return [rows.definition_from(r) for r in found]

    async def delete_definition(self, name: str) -> int:
        row = await self._row(sql.DELETE_DEFINITION, name)
        if row is None:
            raise rows.agent_not_found(name)
        return int(row[0])

    async def pause(self, record: PausedRecord, now: Micros, max_per_tenant: int) -> None:
        async with self._transaction() as conn:
            # Serialises the tenant's pauses, so two at once cannot both slip under the cap.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"agent.paused:{record.tenant}")
            rows.refuse_if_forgotten(await conn.fetchval(q(sql.FORGOTTEN_CUTOFF), record.tenant), record)
            live = await conn.fetchval(q(sql.COUNT_LIVE_PAUSED), record.tenant, now)
            rows.refuse_over_cap(int(live), max_per_tenant)
            await conn.execute(q(sql.INSERT_PAUSED), *rows.paused_values(record))

    async def get_paused(self, tenant: str, run_id: str) -> PausedRecord:
        row = await self._row(sql.GET_PAUSED, tenant, run_id)
        if row is None:
            raise rows.run_not_found(run_id)
        return rows.paused_from(row)

    async def take_paused(self, tenant: str, run_id: str) -> PausedRecord:
        row = await self._row(sql.TAKE_PAUSED, tenant, run_id)
        if row is None:
            raise rows.run_not_found(run_id)
        return rows.paused_from(row)

    async def expire_paused(self, now: Micros, limit: int) -> list[PausedRecord]:
        async with self._transaction() as conn:
            due = [
                rows.paused_from(r) for r in await conn.fetch(q(sql.DUE_PAUSED + " FOR UPDATE SKIP LOCKED"), now, limit)
            ]
            for record in due:
                await conn.execute(q(sql.MARK_EXPIRED), record.tenant, record.run_id)
        return due

    async def purge_expired(self, before: Micros) -> int:
        async with self._transaction() as conn:
            status: str = await conn.execute(q(sql.PURGE_EXPIRED), before)
        return int(status.split()[-1])

    async def forget_paused(self, tenant: str, at: Micros) -> list[PausedRecord]:
        async with self._transaction() as conn:
            # The tenant's pause lock: a racing pause sees the tombstone, or commits before the delete.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"agent.paused:{tenant}")
            await conn.execute(q(sql.RECORD_FORGOTTEN), tenant, at)
            found = await conn.fetch(q(sql.FORGET_PAUSED), tenant)
        return [rows.paused_from(r) for r in found]

    async def export_paused(self, tenant: str) -> list[PausedRecord]:
        async with self._transaction() as conn:
            found = await conn.fetch(
                q(sql.EXPORT_PAUSED.replace("ORDER BY run_id", 'ORDER BY run_id COLLATE "C"')), tenant
            )
        return [rows.paused_from(r) for r in found]

    async def insert_erasure(self, row: ErasureRow) -> ErasureRow:
        async with self._transaction() as conn:
            await conn.execute(q(sql.INSERT_ERASURE), *rows.erasure_values(row))
            return rows.erasure_from(await conn.fetchrow(q(sql.ERASURE_BY_REQUEST), row.tenant, row.request_id))

    async def pending_erasure(self, tenant: str) -> ErasureRow | None:
        row = await self._row(sql.PENDING_ERASURE, tenant)
        return None if row is None else rows.erasure_from(row)

    async def get_erasure(self, tenant: str, erasure_id: str) -> ErasureRow:
        row = await self._row(sql.GET_ERASURE, tenant, erasure_id)
        if row is None:
            raise rows.erasure_not_found(erasure_id)
        return rows.erasure_from(row)

    async def claim_erasure(self, erasure_id: str, now: Micros, lease_until: Micros) -> ErasureRow | None:
        row = await self._row(sql.CLAIM_ERASURE, lease_until, erasure_id, now)
        return None if row is None else rows.erasure_from(row)

    async def save_erasure(self, erasure_id: str, body: str, state: str, next_attempt_at: Micros) -> None:
        async with self._transaction() as conn:
            await conn.execute(q(sql.SAVE_ERASURE), body, state, next_attempt_at, erasure_id)

    async def due_erasures(self, now: Micros, limit: int) -> list[str]:
        async with self._transaction() as conn:
            found = await conn.fetch(q(sql.DUE_ERASURES), now, now, limit)
        return [str(r[0]) for r in found]
