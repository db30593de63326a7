"""What only the Postgres sink must get right: several writer processes on one database."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from loomflow.audit.core import AuditLog
from loomflow.audit.keys import AuditKeys
from loomflow.audit.models import Draft, QueryFilter
from loomflow.audit.sink.postgres import migrate
from loomflow.kernel.backends.migrations import TABLE
from tests.audit.conftest import make_log

pytestmark = pytest.mark.postgres


async def test_two_writers_on_one_database_never_fork_a_chain(postgres_schema_dsn: str, keys: AuditKeys) -> None:
    first, second = make_log(postgres_schema_dsn, keys), make_log(postgres_schema_dsn, keys)
    await first.start()
    await second.start()

    async def burst(log: AuditLog, tag: str) -> list[int]:
        drafts = [Draft("alice", actor=tag, action="x", payload=b"%d" % n) for n in range(50)]
        return [r.seq for r in await asyncio.gather(*(log.append(d) for d in drafts))]

    try:
        seqs = await asyncio.gather(*(burst(log, tag) for log, tag in ((first, "a"), (second, "b")) for _ in range(3)))
        report = await first.verify("alice")
    finally:
        await first.stop()
        await second.stop()
    every = sorted(s for run in seqs for s in run)
    assert every == list(range(1, 301)), "two processes handed out the same seq, or skipped one"
    assert report.ok, report.chains[0].reason


async def test_forget_in_one_process_reaches_another_that_cached_the_key(
    postgres_schema_dsn: str, keys: AuditKeys
) -> None:
    writer, admin = make_log(postgres_schema_dsn, keys), make_log(postgres_schema_dsn, keys)
    await writer.start()
    await admin.start()
    try:
        await writer.append(Draft("alice", actor="agent", action="x", payload=b"before"))
        await admin.forget("alice", actor="operator")
        await writer.append(Draft("alice", actor="agent", action="x", payload=b"after"))  # its cached key is gone
        seen_by_admin = await admin.query(QueryFilter("alice"))
        report = await admin.verify("alice")
    finally:
        await writer.stop()
        await admin.stop()
    assert [(i.entry.action, i.shredded, i.payload) for i in seen_by_admin] == [
        ("x", True, b""),
        ("audit.forget", False, b""),
        ("x", False, b"after"),
    ], "the entry written after Forget must use a new key that still exists"
    assert report.ok


async def test_migrations_are_idempotent_and_safe_to_race(postgres_schema_dsn: str) -> None:
    connections = [await asyncpg.connect(postgres_schema_dsn) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate(c) for c in connections))
        await migrate(connections[0])
        versions = await connections[0].fetch(f"SELECT version FROM {TABLE} WHERE component = 'audit'")
    finally:
        for conn in connections:
            await conn.close()
    assert [r["version"] for r in versions] == [1]
