"""The embedded agent store: one SQLite file under the data directory (WAL, one writer at a time).

Each call runs on the file's writer thread
(:class:`~loomflow.kernel.backends.sqlite.GroupWriter`), in its own savepoint of a
transaction shared with the calls queued with it, so the event loop never waits on
the disk and statements of one transaction never interleave.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from loomflow.agent.store import rows, sql
from loomflow.agent.store.base import ErasureRow, Micros, PausedRecord, StoredDefinition
from loomflow.kernel.backends import sqlite as sqlite_backend
from loomflow.kernel.backends.errors import unavailable_on_outage
from loomflow.kernel.errors import Unavailable

T = TypeVar("T")
WHAT = "agent store (SQLite)"


class SQLiteAgentStore:
    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._writes: sqlite_backend.GroupWriter | None = None

    async def start(self) -> None:
        def open_and_migrate() -> sqlite3.Connection:
            conn = sqlite_backend.connect(self._path)
            for statement in sql.SCHEMA:
                conn.execute(statement)
            return conn

        self._writes = sqlite_backend.GroupWriter(open_and_migrate, "agent-sqlite")
        with unavailable_on_outage(WHAT):
            await self._writes.start()

    async def close(self) -> None:
        writes, self._writes = self._writes, None
        if writes is not None:
            await writes.close()

    async def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        writes = self._writes
        if writes is None or writes.connection is None:
            raise Unavailable("agent store is not started")
        with unavailable_on_outage(WHAT):
            return await writes.write(work)

    async def put_definition(self, name: str, body: str, at: Micros) -> StoredDefinition:
        return await self._transaction(
            lambda c: rows.definition_from(c.execute(sql.UPSERT_DEFINITION, (name, body, at)).fetchone())
        )

    async def get_definition(self, name: str) -> StoredDefinition:
        row = await self._transaction(lambda c: c.execute(sql.GET_DEFINITION, (name,)).fetchone())
        if row is None:
            raise rows.agent_not_found(name)
        return rows.definition_from(row)

    async def list_definitions(self, after: str, limit: int) -> list[StoredDefinition]:
        found = await self._transaction(lambda c: c.execute(sql.LIST_DEFINITIONS, (after, limit)).fetchall())
        return [rows.definition_from(r) for r in found]

    async def delete_definition(self, name: str) -> int:
        row = await self._transaction(lambda c: c.execute(sql.DELETE_DEFINITION, (name,)).fetchone())
        if row is None:
            raise rows.agent_not_found(name)
        return int(row[0])

    async def pause(self, record: PausedRecord, now: Micros, max_per_tenant: int) -> None:
        def work(c: sqlite3.Connection) -> None:
            forgotten = c.execute(sql.FORGOTTEN_CUTOFF, (record.tenant,)).fetchone()
            rows.refuse_if_forgotten(None if forgotten is None else int(forgotten[0]), record)
            (live,) = c.execute(sql.COUNT_LIVE_PAUSED, (record.tenant, now)).fetchone()
            rows.refuse_over_cap(int(live), max_per_tenant)
            c.execute(sql.INSERT_PAUSED, rows.paused_values(record))

        await self._transaction(work)

    async def get_paused(self, tenant: str, run_id: str) -> PausedRecord:
        row = await self._transaction(lambda c: c.execute(sql.GET_PAUSED, (tenant, run_id)).fetchone())
        if row is None:
            raise rows.run_not_found(run_id)
        return rows.paused_from(row)

    async def take_paused(self, tenant: str, run_id: str) -> PausedRecord:
        row = await self._transaction(lambda c: c.execute(sql.TAKE_PAUSED, (tenant, run_id)).fetchone())
        if row is None:
            raise rows.run_not_found(run_id)
        return rows.paused_from(row)

    async def expire_paused(self, now: Micros, limit: int) -> list[PausedRecord]:
        def work(c: sqlite3.Connection) -> list[PausedRecord]:
            due = [rows.paused_from(r) for r in c.execute(sql.DUE_PAUSED, (now, limit)).fetchall()]
            for record in due:
                c.execute(sql.MARK_EXPIRED, (record.tenant, record.run_id))
            return due

        return await self._transaction(work)

    async def purge_expired(self, before: Micros) -> int:
        return await self._transaction(lambda c: c.execute(sql.PURGE_EXPIRED, (before,)).rowcount)

    async def forget_paused(self, tenant: str, at: Micros) -> list[PausedRecord]:
        def work(c: sqlite3.Connection) -> list[PausedRecord]:
            c.execute(sql.RECORD_FORGOTTEN, (tenant, at))
            return [rows.paused_from(r) for r in c.execute(sql.FORGET_PAUSED, (tenant,)).fetchall()]

        return await self._transaction(work)

    async def export_paused(self, tenant: str) -> list[PausedRecord]:
        found = await self._transaction(lambda c: c.execute(sql.EXPORT_PAUSED, (tenant,)).fetchall())
        return [rows.paused_from(r) for r in found]

    async def insert_erasure(self, row: ErasureRow) -> ErasureRow:
        def work(c: sqlite3.Connection) -> ErasureRow:
            c.execute(sql.INSERT_ERASURE, rows.erasure_values(row))
            return rows.erasure_from(c.execute(sql.ERASURE_BY_REQUEST, (row.tenant, row.request_id)).fetchone())

        return await self._transaction(work)

    async def pending_erasure(self, tenant: str) -> ErasureRow | None:
        row = await self._transaction(lambda c: c.execute(sql.PENDING_ERASURE, (tenant,)).fetchone())
        return None if row is None else rows.erasure_from(row)

    async def get_erasure(self, tenant: str, erasure_id: str) -> ErasureRow:
        row = await self._transaction(lambda c: c.execute(sql.GET_ERASURE, (tenant, erasure_id)).fetchone())
        if row is None:
            raise rows.erasure_not_found(erasure_id)
        return rows.erasure_from(row)

    async def claim_erasure(self, erasure_id: str, now: Micros, lease_until: Micros) -> ErasureRow | None:
        row = await self._transaction(lambda c: c.execute(sql.CLAIM_ERASURE, (lease_until, erasure_id, now)).fetchone())
        return None if row is None else rows.erasure_from(row)

    async def save_erasure(self, erasure_id: str, body: str, state: str, next_attempt_at: Micros) -> None:
        await self._transaction(lambda c: c.execute(sql.SAVE_ERASURE, (body, state, next_attempt_at, erasure_id)))

    async def due_erasures(self, now: Micros, limit: int) -> list[str]:
        found = await self._transaction(lambda c: c.execute(sql.DUE_ERASURES, (now, now, limit)).fetchall())
        return [str(r[0]) for r in found]
