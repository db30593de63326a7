"""The kernel's one migration runner, on real Postgres (LOOMFLOW_TEST_POSTGRES_DSN), a schema per test.

- Many processes starting at once apply each migration exactly once (the advisory lock).
- A database an older release migrated (each service kept its own bookkeeping table, the agent store
  none) is adopted on first run: its version is recorded without re-running anything, and the service
  starts, with and without DDL rights (``LOOMFLOW_MIGRATE=false``).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from loomflow.agent.store.postgres import SCHEMA as AGENT
from loomflow.audit.sink.postgres import SCHEMA as AUDIT
from loomflow.budget.ledger.postgres import SCHEMA as BUDGET
from loomflow.kernel.backends import migrations
from loomflow.kernel.backends.migrations import TABLE, Schema, SchemaBehind
from loomflow.memory.store.postgres import SCHEMA as MEMORY
from loomflow.policy.store.postgres import SCHEMA as POLICY
from tests.support.backends import postgres_schema
from tests.test_migrate import _open_close

pytestmark = pytest.mark.postgres

# Not idempotent on purpose: running a step twice fails, and step 2 counts how often it ran.
COUNTED = migrations.numbered(
    "counted",
    [
        ["CREATE TABLE counted_runs (n int NOT NULL)", "INSERT INTO counted_runs VALUES (1)"],
        "UPDATE counted_runs SET n = n + 1",
    ],
)


async def _connection(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn)


async def _rows(dsn: str, component: str) -> list[tuple[int, bool]]:
    conn = await _connection(dsn)
    try:
        found = await conn.fetch(
            f"SELECT version, adopted FROM {TABLE} WHERE component = $1 ORDER BY version", component
        )
    finally:
        await conn.close()
    return [(r["version"], r["adopted"]) for r in found]


async def test_many_starts_at_once_apply_each_migration_exactly_once() -> None:
    async with postgres_schema(f"mig_race_{secrets.token_hex(3)}") as dsn:
        connections = [await _connection(dsn) for _ in range(8)]
        try:
            versions = await asyncio.gather(*(migrations.migrate(c, COUNTED) for c in connections))
            again = await migrations.migrate(connections[0], COUNTED)
            runs = await connections[0].fetchval("SELECT n FROM counted_runs")
        finally:
            await asyncio.gather(*(c.close() for c in connections))
        assert versions == [2] * 8
        assert again == 2
        assert runs == 2, "step 1 ran once (it would fail twice) and step 2 once"
        assert await _rows(dsn, "counted") == [(1, False), (2, False)]


async def test_check_refuses_a_schema_behind_and_accepts_a_current_one() -> None:
    async with postgres_schema(f"mig_check_{secrets.token_hex(3)}") as dsn:
        conn = await _connection(dsn)
        try:
            with pytest.raises(SchemaBehind, match=r"^counted schema is at version 0, this release needs 2"):
                await migrations.check(conn, COUNTED)
            await migrations.migrate(conn, COUNTED)
            await migrations.check(conn, COUNTED)
            newer = migrations.numbered("counted", [*(m.statements for m in COUNTED.migrations), "SELECT 1"])
            with pytest.raises(SchemaBehind, match="at version 2, this release needs 3"):
                await migrations.check(conn, newer)
        finally:
            await conn.close()


async def test_a_legacy_version_is_adopted_not_rerun_and_later_steps_still_apply() -> None:
    legacy = migrations.numbered(
        COUNTED.component, [m.statements for m in COUNTED.migrations], migrations.legacy_table("counted_old")
    )
    async with postgres_schema(f"mig_adopt_{secrets.token_hex(3)}") as dsn:
        conn = await _connection(dsn)
        try:  # what the older release left: step 1 applied, recorded its own way
            await conn.execute("CREATE TABLE counted_old (version int PRIMARY KEY)")
            await conn.execute("INSERT INTO counted_old VALUES (1)")
            for statement in COUNTED.migrations[0].statements:
                await conn.execute(statement)
            await migrations.check(conn, migrations.numbered("counted", ["SELECT 1"], legacy.legacy))
            assert await migrations.migrate(conn, legacy) == 2
            assert await conn.fetchval("SELECT n FROM counted_runs") == 2, "step 1 adopted, not re-run; step 2 ran"
        finally:
            await conn.close()
        assert await _rows(dsn, "counted") == [(1, True), (2, False)]


def _old_table(table: str, ddl: str, rows: str) -> Callable[[asyncpg.Connection, Schema], Awaitable[None]]:
    async def leave(conn: asyncpg.Connection, schema: Schema) -> None:
        await conn.execute(ddl.format(table))
        await conn.execute(rows.format(table=table, latest=schema.latest))

    return leave


async def _nothing(_conn: asyncpg.Connection, _schema: Schema) -> None:
    return None


# What each service's last release before the kernel runner recorded (its own table's DDL, its rows).
PER_VERSION = "INSERT INTO {table} (version) SELECT generate_series(1, {latest})"
OLD_RELEASES = {
    "memory": (
        MEMORY,
        _old_table(
            "memory_schema_migrations",
            "CREATE TABLE {0} (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            PER_VERSION,
        ),
    ),
    "audit": (
        AUDIT,
        _old_table(
            "audit_migrations",
            "CREATE TABLE {0} (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
            PER_VERSION,
        ),
    ),
    "budget": (BUDGET, _old_table("budget_schema", "CREATE TABLE {0} (version int PRIMARY KEY)", PER_VERSION)),
    "policy": (  # one row: the version reached
        POLICY,
        _old_table(
            "policy_schema", "CREATE TABLE {0} (version INTEGER NOT NULL)", "INSERT INTO {table} VALUES ({latest})"
        ),
    ),
    "agent": (AGENT, _nothing),  # no bookkeeping: its tables existing meant current
}


@pytest.mark.parametrize("backend", sorted(OLD_RELEASES))
async def test_each_service_adopts_the_version_an_older_release_recorded(backend: str) -> None:
    schema, leave_bookkeeping = OLD_RELEASES[backend]
    async with postgres_schema(f"mig_old_{backend}_{secrets.token_hex(3)}") as dsn:
        conn = await _connection(dsn)
        try:
            for migration in schema.migrations:  # the older release's tables, as its own runner left them
                for statement in migration.statements:
                    await conn.execute(statement)
            await leave_bookkeeping(conn, schema)
        finally:
            await conn.close()
        await _open_close(backend, dsn, migrate=False)  # no DDL rights needed: the old version counts
        await _open_close(backend, dsn, migrate=True)  # adopts
        await _open_close(backend, dsn, migrate=False)
        assert await _rows(dsn, backend) == [(v, True) for v in range(1, schema.latest + 1)]
