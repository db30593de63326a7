"""AuditService through real gRPC with real credentials: scoping, operator-only reads,
Export, Forget, checkpoints and bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf import struct_pb2

from loomflow.audit.checkpoint import signed_bytes
from loomflow.audit.models import SignedHead
from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.testing.suite import TEST_JWT_SECRET, RunningSuite, running_suite
from loomflow.v1 import audit_pb2, audit_pb2_grpc, tenancy_pb2
from tests.audit.conftest import KeyTexts
from tests.support.status import bad_request_fields

AUTH = AuthSettings(jwt_secret=TEST_JWT_SECRET)
SERVICE = (("authorization", f"Bearer {mint_token(AUTH, 'agent', Role.SERVICE)}"),)
OPERATOR = (("authorization", f"Bearer {mint_token(AUTH, 'auditor', Role.OPERATOR)}"),)
ALICE = tenancy_pb2.UserScope(user_id="alice")
BOB = tenancy_pb2.UserScope(user_id="bob")
ANONYMOUS = tenancy_pb2.UserScope(anonymous=tenancy_pb2.Anonymous())


@pytest.fixture
async def secure(tmp_path: Path, key_texts: KeyTexts) -> AsyncIterator[RunningSuite]:
    overrides = {"audit": key_texts.settings()}
    async with running_suite(tmp_path, services="audit", insecure=False, overrides=overrides) as running:
        yield running


def stub(suite: RunningSuite) -> audit_pb2_grpc.AuditServiceAsyncStub:
    return audit_pb2_grpc.AuditServiceStub(suite.channel)


def payload(**values: str) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


async def append(suite: RunningSuite, scope: tenancy_pb2.UserScope, secret: str, **fields: str) -> int:
    request = audit_pb2.AppendRequest(
        scope=scope,
        actor=fields.get("actor", "agent"),
        action=fields.get("action", "tool_call"),
        session_id=fields.get("session_id", "s1"),
        payload=payload(secret=secret),
    )
    reply = await stub(suite).Append(request, metadata=SERVICE, timeout=10)
    return reply.seq


async def test_query_and_export_return_only_the_callers_tenant(secure: RunningSuite) -> None:
    for n in range(3):
        await append(secure, ALICE, f"alice-{n}")
        await append(secure, BOB, f"bob-{n} mentions alice")
    await append(secure, ANONYMOUS, "anon-0")

    queried = await stub(secure).Query(audit_pb2.QueryRequest(scope=ALICE), metadata=SERVICE, timeout=10)
    assert [e.scope.user_id for e in queried.entries] == ["alice"] * 3
    assert [e.payload["secret"] for e in queried.entries] == ["alice-0", "alice-1", "alice-2"]

    exported = [
        item.entry
        async for item in stub(secure).Export(
            audit_pb2.AuditServiceExportRequest(scope=BOB), metadata=SERVICE, timeout=10
        )
    ]
    assert [e.scope.user_id for e in exported] == ["bob"] * 3, "Export leaked another tenant's entry"
    assert [e.payload["secret"] for e in exported] == [f"bob-{n} mentions alice" for n in range(3)]

    anonymous = await stub(secure).Query(audit_pb2.QueryRequest(scope=ANONYMOUS), metadata=SERVICE, timeout=10)
    assert [e.scope.WhichOneof("kind") for e in anonymous.entries] == ["anonymous"]


async def test_all_tenants_reads_need_an_operator(secure: RunningSuite) -> None:
    await append(secure, ALICE, "a")
    await append(secure, BOB, "b")
    for call in (
        stub(secure).Query(audit_pb2.QueryRequest(scope=ALICE, all_tenants=True), metadata=SERVICE, timeout=10),
        stub(secure).Verify(audit_pb2.VerifyRequest(scope=ALICE, all_tenants=True), metadata=SERVICE, timeout=10),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    everyone = await stub(secure).Query(
        audit_pb2.QueryRequest(scope=ALICE, all_tenants=True), metadata=OPERATOR, timeout=10
    )
    assert sorted(e.scope.user_id for e in everyone.entries) == ["alice", "bob"]
    verified = await stub(secure).Verify(
        audit_pb2.VerifyRequest(scope=ALICE, all_tenants=True), metadata=OPERATOR, timeout=10
    )
    assert verified.ok
    assert sorted(c.scope.user_id for c in verified.chains) == ["alice", "bob"]


async def test_end_user_tokens_cannot_reach_the_audit_service(secure: RunningSuite) -> None:
    alice_token = (("authorization", f"Bearer {mint_token(AUTH, 'alice', Role.USER)}"),)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub(secure).Query(audit_pb2.QueryRequest(scope=ALICE), metadata=alice_token, timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_forget_then_verify_still_ok_and_payloads_unreadable(secure: RunningSuite) -> None:
    for n in range(3):
        await append(secure, ALICE, f"alice-{n}")
    await append(secure, BOB, "bob-0")
    forgot = await stub(secure).Forget(audit_pb2.AuditServiceForgetRequest(scope=ALICE), metadata=OPERATOR, timeout=10)
    assert forgot.entries_shredded == 3

    verified = await stub(secure).Verify(audit_pb2.VerifyRequest(scope=ALICE), metadata=SERVICE, timeout=10)
    assert verified.ok, [c.reason for c in verified.chains]
    assert verified.chains[0].entries_checked == 4, "the chain should hold 3 entries plus the Forget record"

    queried = await stub(secure).Query(audit_pb2.QueryRequest(scope=ALICE), metadata=SERVICE, timeout=10)
    shredded = [(e.payload_shredded, e.HasField("payload")) for e in queried.entries[:3]]
    assert shredded == [(True, False)] * 3, "a payload is still readable after Forget"
    assert (queried.entries[3].action, queried.entries[3].actor) == ("audit.forget", "auditor")
    bob = await stub(secure).Query(audit_pb2.QueryRequest(scope=BOB), metadata=SERVICE, timeout=10)
    assert bob.entries[0].payload["secret"] == "bob-0", "Forget of Alice touched Bob"


async def test_checkpoints_sign_the_heads_and_verify_under_the_returned_key(secure: RunningSuite) -> None:
    await append(secure, ALICE, "a")
    await append(secure, ALICE, "b")
    await append(secure, BOB, "c")
    created = await stub(secure).GetCheckpoint(
        audit_pb2.GetCheckpointRequest(scope=ALICE, create=True), metadata=SERVICE, timeout=10
    )
    latest = await stub(secure).GetCheckpoint(audit_pb2.GetCheckpointRequest(scope=ALICE), metadata=SERVICE, timeout=10)
    assert latest.checkpoint == created.checkpoint
    cp = created.checkpoint
    assert sorted(h.seq for h in cp.heads) == [1, 2]
    assert all("alice" not in h.tenant_digest and "bob" not in h.tenant_digest for h in cp.heads)
    micros = cp.created_at.seconds * 1_000_000 + cp.created_at.nanos // 1000
    heads = tuple(SignedHead(h.tenant_digest, h.seq, h.mac) for h in cp.heads)
    public = Ed25519PublicKey.from_public_bytes(cp.public_key)
    public.verify(cp.signature, signed_bytes(cp.checkpoint_id, micros, heads))  # raises if the signature is bad

    verified = await stub(secure).Verify(audit_pb2.VerifyRequest(scope=ALICE), metadata=SERVICE, timeout=10)
    assert verified.checkpoint_id == cp.checkpoint_id


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"actor": ""}, "actor"),
        ({"action": ""}, "action"),
        ({"action": "x" * 129}, "action"),
        ({"session_id": "s" * 257}, "session_id"),
    ],
)
async def test_bad_appends_are_invalid_argument_with_the_field(
    secure: RunningSuite, fields: dict[str, str], bad_field: str
) -> None:
    request = audit_pb2.AppendRequest(scope=ALICE, actor="agent", action="tool_call")
    for name, value in fields.items():
        setattr(request, name, value)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub(secure).Append(request, metadata=SERVICE, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_field in bad_request_fields(refused.value)
    sentinel = tenancy_pb2.UserScope(user_id="__jeeves_anon_user__")
    with pytest.raises(grpc.aio.AioRpcError) as reserved:
        await stub(secure).Append(
            audit_pb2.AppendRequest(scope=sentinel, actor="a", action="b"), metadata=SERVICE, timeout=10
        )
    assert reserved.value.code() == grpc.StatusCode.INVALID_ARGUMENT
