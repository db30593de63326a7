"""A failover that leaves a service on a read-only standby answers UNAVAILABLE, saying so, then recovers.

Every Postgres backend (memory, budget, policy, audit, the agent store) and every Redis backend (memory,
budget) is served through real gRPC, in-process, on a database of its own:

* Postgres: the service logs in as a role of this test; ``ALTER ROLE … SET default_transaction_read_only``
  plus terminating the role's sessions is what a failover to a standby looks like to the pool (connections
  drop, the new ones take no writes). Resetting it and dropping the sessions again is the failback.
* Redis: a private redis-server; ``REPLICAOF`` a master that does not exist turns it into a read-only
  replica (``READONLY`` on every write); ``REPLICAOF NO ONE`` promotes it back.

While read-only, every write RPC must answer UNAVAILABLE (never INTERNAL, never OK), at least one naming the
read-only standby; after failback, writes succeed again without restarting the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis

from loomflow.kernel.backends import dsn as dsns
from loomflow.testing.processes import free_port
from loomflow.testing.suite import running_suite
from loomflow.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    budget_pb2,
    budget_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    tenancy_pb2,
)
from tests.support.backends import postgres_dsn, redis_url

SCOPE = tenancy_pb2.UserScope(user_id="alice")
READ_ONLY_WORDS = "read-only standby"
ATTEMPTS = 6
Write = Callable[[grpc.aio.Channel, int], Awaitable[Any]]


async def remember(channel: grpc.aio.Channel, n: int) -> None:
    stub = memory_pb2_grpc.MemoryServiceStub(channel)
    await stub.Remember(memory_pb2.RememberRequest(scope=SCOPE, session_id="s", input=f"note {n}"), timeout=20)


async def reserve(channel: grpc.aio.Channel, n: int) -> None:
    stub = budget_pb2_grpc.BudgetServiceStub(channel)
    request = budget_pb2.ReserveRequest(
        scope=SCOPE, call_id=f"call-{n}", model="echo", estimate=budget_pb2.Usage(input_tokens=1)
    )
    await stub.Reserve(request, timeout=20)


async def put_policy(channel: grpc.aio.Channel, n: int) -> None:
    stub = policy_pb2_grpc.PolicyServiceStub(channel)
    rule = policy_pb2.Rule(id=f"r{n}", tool="shell", decision=policy_pb2.DECISION_DENY)
    await stub.PutPolicy(policy_pb2.PutPolicyRequest(scope=SCOPE, policy=policy_pb2.Policy(rules=[rule])), timeout=20)


async def append(channel: grpc.aio.Channel, n: int) -> None:
    stub = audit_pb2_grpc.AuditServiceStub(channel)
    await stub.Append(audit_pb2.AppendRequest(scope=SCOPE, actor="agent", action=f"act{n}"), timeout=20)


async def put_agent(channel: grpc.aio.Channel, n: int) -> None:
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    definition = agent_pb2.AgentDefinition(name="support", system_prompt=f"v{n}", model="echo")
    await stub.PutAgent(agent_pb2.PutAgentRequest(scope=SCOPE, agent=definition), timeout=20)


# backend → (services to serve, the setting section and field naming its DSN, one write RPC)
POSTGRES_BACKENDS: dict[str, tuple[str, str, str, Write]] = {
    "memory": ("memory", "memory", "dsn", remember),
    "budget": ("budget", "budget", "dsn", reserve),
    "policy": ("policy", "policy", "dsn", put_policy),
    "audit": ("audit", "audit", "dsn", append),
    "agent": ("memory,budget,policy,audit,agent", "agent", "store_dsn", put_agent),
}
REDIS_BACKENDS: dict[str, tuple[str, str, str, Write]] = {
    "memory": ("memory", "memory", "dsn", remember),
    "budget": ("budget", "budget", "dsn", reserve),
}


async def _outcome(write: Write, channel: grpc.aio.Channel, n: int) -> tuple[grpc.StatusCode, str]:
    try:
        await write(channel, n)
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def fail_over_and_back(
    tmp_path: Path, backend: tuple[str, str, str, Write], dsn: str, standby: Callable[[bool], Awaitable[None]]
) -> None:
    services, section, field, write = backend
    counter = itertools.count()
    async with running_suite(tmp_path, services, overrides={section: {field: dsn}}) as running:
        assert await _outcome(write, running.channel, next(counter)) == (grpc.StatusCode.OK, ""), "healthy first"
        await standby(True)
        during = [await _outcome(write, running.channel, next(counter)) for _ in range(ATTEMPTS)]
        assert {code for code, _ in during} == {grpc.StatusCode.UNAVAILABLE}, during
        assert any(READ_ONLY_WORDS in detail for _, detail in during), during
        await standby(False)
        after: list[tuple[grpc.StatusCode, str]] = []
        for _ in range(ATTEMPTS * 3):
            after.append(await _outcome(write, running.channel, next(counter)))
            if after[-1][0] == grpc.StatusCode.OK:
                break
            await asyncio.sleep(0.3)
        assert after[-1][0] == grpc.StatusCode.OK, f"recovers without a restart: {after}"
        assert {code for code, _ in after} <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, after


@contextlib.asynccontextmanager
async def postgres_role() -> AsyncIterator[tuple[str, Callable[[bool], Awaitable[None]]]]:
    """A login role owning a schema of its own: (its DSN, a switch between primary and read-only standby)."""
    name = f"failover_{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    admin = await asyncpg.connect(postgres_dsn())
    await admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    await admin.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
    parts = urlsplit(postgres_dsn())
    as_role = urlunsplit(parts._replace(netloc=f"{name}:{password}@{parts.netloc.rpartition('@')[2]}"))

    async def standby(read_only: bool) -> None:
        setting = "SET default_transaction_read_only = on" if read_only else "RESET default_transaction_read_only"
        await admin.execute(f"ALTER ROLE {name} {setting}")
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name)

    try:
        yield str(dsns.parse(as_role).with_search_path(name).secret_url), standby
    finally:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name)
        await admin.execute(f"DROP SCHEMA {name} CASCADE")
        await admin.execute(f"DROP ROLE {name}")
        await admin.close()


@pytest.mark.postgres
@pytest.mark.parametrize("name", sorted(POSTGRES_BACKENDS))
async def test_postgres_failover_to_a_read_only_standby_is_unavailable_then_recovers(tmp_path: Path, name: str) -> None:
    async with postgres_role() as (dsn, standby):
        await fail_over_and_back(tmp_path, POSTGRES_BACKENDS[name], dsn, standby)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own (the shared one is never made read-only)."""
    redis_url()  # skips (fails under CI) when the suite runs without Redis
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (scripts/services.sh installs it)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen([*command, "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


async def _wait_for(url: str) -> aioredis.Redis:
    client = aioredis.from_url(url)
    for _ in range(100):
        with contextlib.suppress(OSError, aioredis.ConnectionError):
            await client.ping()
            return client
        await asyncio.sleep(0.05)
    pytest.fail(f"{url} did not start")


@pytest.mark.redis
@pytest.mark.parametrize("name", sorted(REDIS_BACKENDS))
async def test_redis_failover_to_a_read_only_replica_is_unavailable_then_recovers(
    tmp_path: Path, private_redis: str, name: str
) -> None:
    admin = await _wait_for(private_redis)
    nowhere = free_port()

    async def standby(read_only: bool) -> None:
        await admin.execute_command("REPLICAOF", *(("127.0.0.1", nowhere) if read_only else ("NO", "ONE")))  # type: ignore[no-untyped-call]

    try:
        await fail_over_and_back(tmp_path, REDIS_BACKENDS[name], private_redis, standby)
    finally:
        await admin.aclose()
