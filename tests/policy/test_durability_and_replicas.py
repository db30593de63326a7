"""Approvals and policies outlive the server; replicas on one Postgres act as one service."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from loomflow.policy.store.base import Change, ChangeKind
from loomflow.policy.store.postgres import PostgresStore
from loomflow.testing.suite import running_suite
from loomflow.v1 import policy_pb2
from tests.policy.conftest import Backend
from tests.policy.grpc_support import OPERATOR, SERVICE, Client, client, rule
from tests.policy.test_store_conformance import POLICY, approval
from tests.support import backends

PENDING, APPROVED = policy_pb2.APPROVAL_STATUS_PENDING, policy_pb2.APPROVAL_STATUS_APPROVED


@contextlib.asynccontextmanager
async def policy_server(data_dir: Path, dsn: str, **settings: Any) -> AsyncIterator[tuple[Client, Client]]:
    """A secure server hosting Policy on ``dsn``; yields (agent, operator) clients."""
    overrides = {"policy": {"dsn": dsn, "refresh_seconds": 0.1, "expiry_sweep_seconds": 0.1, **settings}}
    async with running_suite(data_dir, services="policy", insecure=False, overrides=overrides) as running:
        yield client(running.channel, SERVICE), client(running.channel, OPERATOR)


async def test_approvals_remembered_answers_and_policies_survive_a_restart(backend: Backend, tmp_path: Path) -> None:
    async with policy_server(tmp_path / "first", backend.dsn) as (agent, operator):
        pending = await agent.request_approval("alice", "delete_file", run_id="run-1", timeout_ms=3_600_000)
        remembered = await agent.request_approval("alice", "shell", run_id="run-1")
        await operator.resolve("alice", remembered.approval_id, policy_pb2.RESOLUTION_APPROVE, remember=True)
        policy = await operator.put_policy(
            "alice", policy_pb2.Policy(rules=[rule("ask-all", "*", policy_pb2.DECISION_ASK)])
        )

    async with policy_server(tmp_path / "second", backend.dsn) as (agent, operator):
        assert await agent.get_approval("alice", pending.approval_id) == pending
        resolved = await operator.resolve("alice", pending.approval_id, policy_pb2.RESOLUTION_APPROVE)
        assert resolved.status == APPROVED
        assert (await agent.get_policy("alice")).policy == policy
        shell = await agent.check("alice", "shell", run_id="run-1")
        assert (shell.decision, shell.approval_id) == (policy_pb2.DECISION_ALLOW, remembered.approval_id)
        other = await agent.check("alice", "other_tool", run_id="run-1")
        assert (other.decision, other.matched_rule) == (policy_pb2.DECISION_ASK, "ask-all")


async def test_an_approval_that_expired_while_the_server_was_down_reads_as_expired(
    backend: Backend, tmp_path: Path
) -> None:
    async with policy_server(tmp_path / "first", backend.dsn) as (agent, _):
        doomed = await agent.request_approval("alice", "delete_file", timeout_ms=50)
    await asyncio.sleep(0.1)
    async with policy_server(tmp_path / "second", backend.dsn, expiry_sweep_seconds=0) as (agent, _):
        assert (await agent.get_approval("alice", doomed.approval_id)).status == policy_pb2.APPROVAL_STATUS_EXPIRED


async def eventually(
    call: Callable[[], Awaitable[policy_pb2.CheckResponse]],
    holds: Callable[[policy_pb2.CheckResponse], bool],
    within: float = 5.0,
) -> None:
    """Repeats ``call`` until its answer ``holds``; fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not holds(last := await call()):
        assert time.monotonic() < deadline, f"still {last} after {within} s"
        await asyncio.sleep(0.02)


# -- several replicas on one Postgres ------------------------------------------


@pytest.mark.postgres
async def test_a_watcher_on_one_replica_sees_approvals_made_on_another(
    postgres_backend: Backend, tmp_path: Path
) -> None:
    dsn = postgres_backend.dsn
    async with (
        policy_server(tmp_path / "a", dsn) as (agent_a, operator_a),
        policy_server(tmp_path / "b", dsn) as (agent_b, operator_b),
    ):
        everyone = operator_a.watch("ops", all_tenants=True, include_resolved=True)
        alice_only = agent_a.watch("alice")
        await asyncio.gather(everyone.ready(), alice_only.ready())
        bobs = await agent_b.request_approval("bob", "shell")
        alices = await agent_b.request_approval("alice", "shell")
        await operator_b.resolve("alice", alices.approval_id, policy_pb2.RESOLUTION_APPROVE)

        seen = await everyone.wait_for(3)
        assert [(a.approval_id, a.status) for a in seen] == [
            (bobs.approval_id, PENDING),
            (alices.approval_id, PENDING),
            (alices.approval_id, APPROVED),
        ]
        assert [a.approval_id for a in await alice_only.wait_for(1)] == [alices.approval_id]
        # Too big for a notification payload: replica A re-reads it by id.
        big = await agent_b.request_approval("alice", "write_file", arguments={"content": "x" * 20_000})
        relayed = (await alice_only.wait_for(2))[1]
        assert relayed == big
        await asyncio.sleep(0.2)
        assert len(alice_only.received) == 2, "alice's watch on replica A got another tenant's approval"
        await asyncio.gather(everyone.close(), alice_only.close())


@pytest.mark.postgres
async def test_a_policy_put_on_one_replica_decides_on_another(postgres_backend: Backend, tmp_path: Path) -> None:
    dsn = postgres_backend.dsn
    async with (
        policy_server(tmp_path / "a", dsn) as (_, operator_a),
        policy_server(tmp_path / "b", dsn) as (agent_b, _),
    ):
        assert (await agent_b.check("alice", "shell")).decision == policy_pb2.DECISION_ALLOW  # now cached on B
        await operator_a.put_policy(
            "alice", policy_pb2.Policy(rules=[rule("no-shell", "shell", policy_pb2.DECISION_DENY)])
        )
        await operator_a.put_policy("x", policy_pb2.Policy(mode=policy_pb2.MODE_PLAN), default_policy=True)
        await eventually(lambda: agent_b.check("alice", "shell"), lambda r: r.decision == policy_pb2.DECISION_DENY)
        await eventually(lambda: agent_b.check("bob", "shell"), lambda r: r.mode == policy_pb2.MODE_PLAN)


@pytest.mark.postgres
async def test_postgres_stores_hear_each_others_writes_but_not_their_own(
    postgres_backend: Backend, unique: str
) -> None:
    writer, reader = postgres_backend.open(), postgres_backend.open()
    await writer.start()
    await reader.start()
    heard_by_reader: asyncio.Queue[Change] = asyncio.Queue()
    heard_by_writer: list[Change] = []
    reader.on_change(heard_by_reader.put_nowait)
    writer.on_change(heard_by_writer.append)
    try:
        small = approval(f"alice-{unique}", "n1")
        large = approval(f"alice-{unique}", "n2", arguments={"blob": "x" * 10_000})
        await writer.put_policy(f"alice-{unique}", POLICY)
        await writer.insert_approval(small)
        await writer.insert_approval(large)
        changes = [await asyncio.wait_for(heard_by_reader.get(), 5) for _ in range(3)]
        assert changes == [
            Change(ChangeKind.POLICY, f"alice-{unique}"),
            Change(ChangeKind.APPROVAL, f"alice-{unique}", "n1", small),  # carried as written
            Change(ChangeKind.APPROVAL, f"alice-{unique}", "n2"),  # too big to carry: re-read by id
        ]
        await asyncio.sleep(0.1)
        assert heard_by_writer == [], "a store must not be told about its own writes"
    finally:
        await writer.close()
        await reader.close()


@pytest.mark.postgres
async def test_notifications_resume_after_the_listening_connection_is_killed(
    postgres_backend: Backend, unique: str
) -> None:
    writer, reader = PostgresStore(postgres_backend.dsn), PostgresStore(postgres_backend.dsn)
    await writer.start()
    await reader.start()
    heard: asyncio.Queue[Change] = asyncio.Queue()
    reader.on_change(heard.put_nowait)
    admin = await asyncpg.connect(backends.postgres_dsn())
    try:
        assert reader._listen_conn is not None
        await admin.execute("SELECT pg_terminate_backend($1)", reader._listen_conn.get_server_pid())
        async with asyncio.timeout(10):
            while True:  # writes made while it reconnects may be missed; one made after must arrive
                await writer.put_policy(f"alice-{unique}", POLICY)
                try:
                    change = await asyncio.wait_for(heard.get(), 0.5)
                    break
                except TimeoutError:
                    continue
        assert change == Change(ChangeKind.POLICY, f"alice-{unique}")
    finally:
        await admin.close()
        await writer.close()
        await reader.close()
