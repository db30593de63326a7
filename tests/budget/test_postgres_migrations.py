"""Postgres migrations are idempotent and safe when many replicas start at once."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from loomflow.budget.ledger.postgres import MIGRATIONS, PostgresLedger
from loomflow.kernel.backends.migrations import TABLE
from tests.budget.conftest import isolated

pytestmark = pytest.mark.postgres


async def test_replicas_starting_together_migrate_once(unique: str) -> None:
    async with isolated("postgres", unique) as backend:
        ledgers = [PostgresLedger(backend.dsn, pool_size=2) for _ in range(6)]
        try:
            await asyncio.gather(*(ledger.start() for ledger in ledgers))
            again = PostgresLedger(backend.dsn, pool_size=1)
            await again.start()
            await again.close()
        finally:
            await asyncio.gather(*(ledger.close() for ledger in ledgers))
        conn = await asyncpg.connect(backend.dsn)
        try:
            versions = [
                r["version"]
                for r in await conn.fetch(f"SELECT version FROM {TABLE} WHERE component = 'budget' ORDER BY 1")
            ]
            tables = {
                r["tablename"]
                for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            }
        finally:
            await conn.close()
    assert versions == list(range(1, len(MIGRATIONS) + 1)), "each migration recorded exactly once"
    assert tables == {TABLE, "budget_limits", "budget_held", "budget_usage", "budget_ledger"}
