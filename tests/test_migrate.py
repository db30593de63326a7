"""`loomflow migrate` applies every service's migrations as the schema owner, so `serve --no-migrate`
(LOOMFLOW_MIGRATE=false, what the prod overlay sets) runs as a role without CREATE rights, and refuses
to start, in one clear line, on a schema `loomflow migrate` has not brought up to date.

Real Postgres (LOOMFLOW_TEST_POSTGRES_DSN), a schema of this test's own, real console-script processes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from loomflow.kernel.backends.migrations import TABLE, SchemaBehind
from loomflow.testing.processes import ServeProcess, loomflow_script
from tests.support.backends import postgres_dsn, postgres_schema

SERVICES = "memory,budget,policy,audit,agent"


def every_dsn(dsn: str) -> dict[str, str]:
    """All five services' databases in one schema, as a small deployment would configure them."""
    return {
        "LOOMFLOW_MEMORY_DSN": dsn,
        "LOOMFLOW_BUDGET_DSN": dsn,
        "LOOMFLOW_POLICY_DSN": dsn,
        "LOOMFLOW_AUDIT_DSN": dsn,
        "LOOMFLOW_AGENT_STORE_DSN": dsn,
    }


def run(command: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOOMFLOW_")}
    base = {"LOOMFLOW_DATA_DIR": str(tmp_path / "data"), "LOOMFLOW_LOG_LEVEL": "error", "LOOMFLOW_SERVICES": SERVICES}
    return subprocess.run(
        [str(loomflow_script()), command, "--insecure"],
        env={**clean, **base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@contextlib.asynccontextmanager
async def app_role(schema: str) -> AsyncIterator[tuple[str, str]]:
    """A login role that may use ``schema`` but not create anything in it (the app's role in prod)."""
    name = f"app_{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    conn = await asyncpg.connect(postgres_dsn())
    try:
        await conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        await conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {name}")
        await conn.execute(f"REVOKE CREATE ON SCHEMA {schema} FROM {name}")
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        yield name, password
    finally:
        await conn.execute(f"DROP OWNED BY {name}")
        await conn.execute(f"DROP ROLE {name}")
        await conn.close()


def as_role(dsn: str, role: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))


async def grant_data_rights(schema: str, role: str) -> None:
    """What the operator grants the app after `loomflow migrate`: rows, not DDL."""
    conn = await asyncpg.connect(postgres_dsn())
    try:
        await conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}")
        await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}")
    finally:
        await conn.close()


async def test_app_without_create_rights_serves_after_migrate(tmp_path: Path) -> None:
    async with postgres_schema(f"migrate_{secrets.token_hex(4)}") as owner_dsn:
        schema = urlsplit(owner_dsn).query.rpartition("search_path=")[2]
        async with app_role(schema) as (role, password):
            app_dsn = as_role(owner_dsn, role, password)
            # Before the Job ran, the app role cannot migrate: --no-migrate refuses, one clear line.
            refused = run("serve", tmp_path, {**every_dsn(app_dsn), "LOOMFLOW_MIGRATE": "false"})
            assert refused.returncode == 2, refused.stderr
            assert "Traceback" not in refused.stderr, refused.stderr
            errors = [line for line in refused.stderr.splitlines() if line.startswith("loomflow: ")]
            assert len(errors) == 1, refused.stderr
            assert "run `loomflow migrate`" in errors[0], errors

            done = run("migrate", tmp_path, every_dsn(owner_dsn))
            assert done.returncode == 0, done.stderr
            assert done.stdout.splitlines() == [
                f"{name}: schema current (LOOMFLOW_{name.upper()}_{'STORE_DSN' if name == 'agent' else 'DSN'})"
                for name in SERVICES.split(",")
            ]
            await grant_data_rights(schema, role)

            env = {**every_dsn(app_dsn), "LOOMFLOW_MIGRATE": "false", "LOOMFLOW_INSECURE": "true"}
            with ServeProcess(SERVICES, tmp_path / "app", env=env) as server:
                assert server.process is not None
                assert server.process.poll() is None


async def test_app_role_cannot_migrate_itself(tmp_path: Path) -> None:
    """Without --no-migrate the same role fails at its DDL: the Job is what needs the rights."""
    async with postgres_schema(f"migrate_{secrets.token_hex(4)}") as owner_dsn:
        schema = urlsplit(owner_dsn).query.rpartition("search_path=")[2]
        async with app_role(schema) as (role, password):
            done = run("migrate", tmp_path, every_dsn(as_role(owner_dsn, role, password)))
            assert done.returncode == 2, done.stdout + done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1, lines
            assert lines[0].startswith("loomflow migrate: memory (LOOMFLOW_MEMORY_DSN): "), lines


def test_migrate_with_embedded_defaults_has_nothing_to_do(tmp_path: Path) -> None:
    done = run("migrate", tmp_path, {})
    assert done.returncode == 0, done.stderr
    assert all("nothing to migrate" in line for line in done.stdout.splitlines()), done.stdout
    assert len(done.stdout.splitlines()) == 5


async def _open_close(backend: str, dsn: str, *, migrate: bool) -> None:
    """Starts one Postgres backend as `serve` would (migrating or only checking), then closes it."""
    if backend == "memory":
        from loomflow.memory.store.postgres import PostgresStore as MemoryStore

        memory = MemoryStore(dsn, migrate=migrate)
        await memory.start()
        await memory.close()
    elif backend == "budget":
        from loomflow.budget.ledger.postgres import PostgresLedger

        ledger = PostgresLedger(dsn, migrate=migrate)
        try:
            await ledger.migrate()
        finally:
            await ledger.close()
    elif backend == "policy":
        from loomflow.policy.store.postgres import PostgresStore as PolicyStore

        policy = PolicyStore(dsn, migrate=migrate)
        await policy.start()
        await policy.close()
    elif backend == "audit":
        from loomflow.audit.sink.postgres import PostgresSink

        sink = PostgresSink(dsn, migrate=migrate)
        await sink.open()
        await sink.close()
    else:
        from loomflow.agent.store.postgres import PostgresAgentStore

        agent = PostgresAgentStore(dsn, migrate=migrate)
        await agent.start()
        await agent.close()


# How to set each backend's schema one step back, as an older release would have left it.
LATEST_ROW = (
    f"DELETE FROM {TABLE} WHERE component = '{{0}}' "
    f"AND version = (SELECT max(version) FROM {TABLE} WHERE component = '{{0}}')"
)
ONE_STEP_BACK = {name: LATEST_ROW.format(name) for name in ("memory", "budget", "policy", "audit")}
# The agent store has one version: without its row it reads as an older release's schema (adopted when its
# objects exist), so one step back also lacks an object, as that release's would.
ONE_STEP_BACK["agent"] = LATEST_ROW.format("agent") + "; DROP INDEX agent_paused_by_expiry"


@pytest.mark.parametrize("backend", sorted(ONE_STEP_BACK))
async def test_each_backend_without_migrations_starts_on_a_current_schema_and_refuses_one_behind(backend: str) -> None:
    async with postgres_schema(f"behind_{backend}_{secrets.token_hex(3)}") as dsn:
        await _open_close(backend, dsn, migrate=True)
        await _open_close(backend, dsn, migrate=False)  # current: starts without DDL
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(ONE_STEP_BACK[backend])
        finally:
            await conn.close()
        with pytest.raises(SchemaBehind, match=rf"^{backend} schema .*run `loomflow migrate`$"):
            await _open_close(backend, dsn, migrate=False)
        await _open_close(backend, dsn, migrate=True)  # migrating again brings it back
        await _open_close(backend, dsn, migrate=False)
