"""kill -9 during concurrent appends loses no acknowledged entry, on every sink.

The server runs as a real `loomflow serve --services audit` process; 64 clients
append concurrently and record every acknowledgement; the process is SIGKILLed
mid-stream, restarted on the same storage, and every acknowledged (tenant, seq,
mac) must be there, with every chain verifying.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.testing.processes import ServeProcess
from loomflow.testing.suite import TEST_JWT_SECRET
from loomflow.v1 import audit_pb2, audit_pb2_grpc, tenancy_pb2
from tests.audit.conftest import KeyTexts

AUTH = AuthSettings(jwt_secret=TEST_JWT_SECRET)
SERVICE = (("authorization", f"Bearer {mint_token(AUTH, 'agent', Role.SERVICE)}"),)
OPERATOR = (("authorization", f"Bearer {mint_token(AUTH, 'auditor', Role.OPERATOR)}"),)
TENANTS = [f"user-{n}" for n in range(8)]
WRITERS = 64
ACKS_BEFORE_KILL = 400


Ack = tuple[str, int, bytes]


async def _append_until_killed(
    stub: audit_pb2_grpc.AuditServiceAsyncStub, tenant: str, acked: list[Ack], enough: asyncio.Event
) -> None:
    scope = tenancy_pb2.UserScope(user_id=tenant)
    n = 0
    while True:
        payload = struct_pb2.Struct()
        payload.update({"n": n})
        request = audit_pb2.AppendRequest(scope=scope, actor="agent", action="tool_call", payload=payload)
        try:
            reply = await stub.Append(request, metadata=SERVICE, timeout=10)
        except grpc.aio.AioRpcError:
            return  # the server died: this append was never acknowledged
        acked.append((tenant, reply.seq, reply.mac))
        if len(acked) >= ACKS_BEFORE_KILL:
            enough.set()
        n += 1


async def _stored(stub: audit_pb2_grpc.AuditServiceAsyncStub) -> dict[tuple[str, int], bytes]:
    stored: dict[tuple[str, int], bytes] = {}
    for tenant in TENANTS:
        request = audit_pb2.AuditServiceExportRequest(scope=tenancy_pb2.UserScope(user_id=tenant))
        async for item in stub.Export(request, metadata=SERVICE, timeout=30):
            stored[(tenant, item.entry.seq)] = item.entry.mac
    return stored


@pytest.mark.slow
async def test_kill_9_during_concurrent_appends_loses_no_acknowledged_entry(
    dsn: str, tmp_path: Path, key_texts: KeyTexts
) -> None:
    env = {
        **key_texts.env(),
        "LOOMFLOW_AUDIT_DSN": dsn,
        "LOOMFLOW_AUTH_JWT_SECRET": TEST_JWT_SECRET,
        "LOOMFLOW_TRACING": "false",
    }
    server = ServeProcess("audit", tmp_path / "serve", env=env).start()
    acked: list[Ack] = []
    enough = asyncio.Event()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = audit_pb2_grpc.AuditServiceStub(channel)
            writers = [
                asyncio.create_task(_append_until_killed(stub, TENANTS[n % len(TENANTS)], acked, enough))
                for n in range(WRITERS)
            ]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(enough.wait(), 60)
            await asyncio.to_thread(server.kill)  # mid-stream: appends are in flight right now
            await asyncio.wait_for(asyncio.gather(*writers), 30)
    finally:
        server.kill()
    assert len(acked) >= ACKS_BEFORE_KILL, f"only {len(acked)} appends acknowledged before the deadline"

    restarted = ServeProcess("audit", tmp_path / "serve", env=env).start()
    try:
        async with grpc.aio.insecure_channel(restarted.address) as channel:
            stub = audit_pb2_grpc.AuditServiceStub(channel)
            stored = await _stored(stub)
            verified = await stub.Verify(
                audit_pb2.VerifyRequest(scope=tenancy_pb2.UserScope(user_id=TENANTS[0]), all_tenants=True),
                metadata=OPERATOR,
                timeout=60,
            )
    finally:
        restarted.stop()

    lost = [(t, s) for t, s, mac in acked if stored.get((t, s)) != mac]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged entries are missing or different: {lost[:5]}"
    assert verified.ok, [(c.scope.user_id, c.first_bad_seq, c.reason) for c in verified.chains if not c.ok]
    assert {c.scope.user_id for c in verified.chains} == set(TENANTS)
