"""The operator's all-tenants scope through real servers, and the operator views that accept it:
PolicyService.ListApprovals and AuditService.Query with a time range.

Every request still carries a scope; ``scope.all_tenants`` is an operator-only choice, refused
(PERMISSION_DENIED) for end users and services, and INVALID_ARGUMENT on an RPC that acts for
one tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2

from loomflow.kernel.auth import Role
from loomflow.testing.suite import RunningSuite, running_suite
from loomflow.v1 import audit_pb2, audit_pb2_grpc, memory_pb2, memory_pb2_grpc, policy_pb2, tenancy_pb2
from tests.audit.conftest import fresh_key_texts
from tests.policy.grpc_support import OPERATOR, SERVICE, bearer, client, user
from tests.support.status import bad_request_fields

EVERYONE = tenancy_pb2.UserScope(all_tenants=tenancy_pb2.AllTenants())


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[RunningSuite]:
    overrides = {"audit": fresh_key_texts().settings(), "memory": {"dsn": "memory://"}}
    async with running_suite(tmp_path, services="memory,policy,audit", insecure=False, overrides=overrides) as s:
        yield s


async def test_list_approvals_pages_one_tenant_or_every_tenant_for_an_operator(served: RunningSuite) -> None:
    agent, operator = client(served.channel, SERVICE), client(served.channel, OPERATOR)
    for who in ("alice", "alice", "alice", "bob"):
        await agent.request_approval(who, "shell")
    denied = await agent.request_approval("bob", "delete_file")
    await operator.resolve("bob", denied.approval_id, policy_pb2.RESOLUTION_DENY)

    alices = await agent.stub.ListApprovals(
        policy_pb2.ListApprovalsRequest(scope=tenancy_pb2.UserScope(user_id="alice"), page_size=2), metadata=SERVICE
    )
    assert len(alices.approvals) == 2
    assert alices.next_page_token
    assert {a.scope.user_id for a in alices.approvals} == {"alice"}
    rest = await agent.stub.ListApprovals(
        policy_pb2.ListApprovalsRequest(
            scope=tenancy_pb2.UserScope(user_id="alice"), page_size=2, page_token=alices.next_page_token
        ),
        metadata=SERVICE,
    )
    assert len(rest.approvals) == 1
    assert not rest.next_page_token

    every = await operator.stub.ListApprovals(policy_pb2.ListApprovalsRequest(scope=EVERYONE), metadata=OPERATOR)
    assert sorted(a.scope.user_id for a in every.approvals) == ["alice"] * 3 + ["bob"] * 2
    created = [a.created_at.ToMilliseconds() for a in every.approvals]
    assert created == sorted(created, reverse=True), "not newest first"

    only_denied = await operator.stub.ListApprovals(
        policy_pb2.ListApprovalsRequest(
            scope=EVERYONE, statuses=[policy_pb2.APPROVAL_STATUS_DENIED], tool_name="delete_file"
        ),
        metadata=OPERATOR,
    )
    assert [a.approval_id for a in only_denied.approvals] == [denied.approval_id]


@pytest.mark.parametrize("who", ["service", "user"])
async def test_all_tenants_is_permission_denied_for_services_and_end_users(served: RunningSuite, who: str) -> None:
    metadata = SERVICE if who == "service" else user("alice")
    policy = client(served.channel, metadata).stub
    audit = audit_pb2_grpc.AuditServiceStub(served.channel)
    with pytest.raises(grpc.aio.AioRpcError) as listing:
        await policy.ListApprovals(policy_pb2.ListApprovalsRequest(scope=EVERYONE), metadata=metadata)
    with pytest.raises(grpc.aio.AioRpcError) as query:
        await audit.Query(audit_pb2.QueryRequest(scope=EVERYONE), metadata=metadata)
    assert listing.value.code() is query.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_all_tenants_on_an_rpc_for_one_tenant_is_invalid_argument_even_for_an_operator(
    served: RunningSuite,
) -> None:
    operator = bearer("oncall", Role.OPERATOR)
    memory = memory_pb2_grpc.MemoryServiceStub(served.channel)
    policy = client(served.channel, operator).stub
    with pytest.raises(grpc.aio.AioRpcError) as remember:
        await memory.Remember(memory_pb2.RememberRequest(scope=EVERYONE, input="hi"), metadata=operator)
    with pytest.raises(grpc.aio.AioRpcError) as check:
        await policy.Check(policy_pb2.CheckRequest(scope=EVERYONE, tool_name="shell"), metadata=operator)
    for caught in (remember, check):
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(caught.value) == ["scope.all_tenants"]


async def test_audit_query_takes_a_time_range_and_refuses_a_backwards_one(served: RunningSuite) -> None:
    audit = audit_pb2_grpc.AuditServiceStub(served.channel)
    stamps = []
    for tenant in ("alice", "bob", "alice"):
        appended = await audit.Append(
            audit_pb2.AppendRequest(scope=tenancy_pb2.UserScope(user_id=tenant), actor="agent", action="tool_call"),
            metadata=SERVICE,
        )
        stamps.append(appended.ts)
    window = audit_pb2.QueryRequest(scope=EVERYONE, from_time=stamps[1], to_time=stamps[2])
    found = await audit.Query(window, metadata=OPERATOR)
    assert [(e.scope.user_id, e.seq) for e in found.entries] == [("bob", 1)]
    backwards = audit_pb2.QueryRequest(
        scope=tenancy_pb2.UserScope(user_id="alice"), from_time=stamps[2], to_time=timestamp_pb2.Timestamp()
    )
    backwards.to_time.CopyFrom(stamps[0])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await audit.Query(backwards, metadata=SERVICE)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(caught.value) == ["to_time"]


async def test_list_tenants_pages_every_tenant_with_its_last_seen_time_for_an_operator_only(
    served: RunningSuite,
) -> None:
    audit = audit_pb2_grpc.AuditServiceStub(served.channel)
    last_seen = {}
    for tenant in ("bob", "alice", "bob"):
        appended = await audit.Append(
            audit_pb2.AppendRequest(scope=tenancy_pb2.UserScope(user_id=tenant), actor="agent", action="tool_call"),
            metadata=SERVICE,
        )
        last_seen[tenant] = appended.ts
    paged = audit_pb2.ListTenantsRequest(scope=EVERYONE, page_size=1)
    first = await audit.ListTenants(paged, metadata=OPERATOR)
    paged.page_token = first.next_page_token
    second = await audit.ListTenants(paged, metadata=OPERATOR)
    rows = [*first.tenants, *second.tenants]
    assert [(t.scope.user_id, t.audit_entries) for t in rows] == [("alice", 1), ("bob", 2)]
    assert [t.last_seen_time for t in rows] == [last_seen["alice"], last_seen["bob"]]
    assert not second.next_page_token

    refusals = [
        (audit_pb2.ListTenantsRequest(scope=EVERYONE), user("alice"), grpc.StatusCode.PERMISSION_DENIED, []),
        (audit_pb2.ListTenantsRequest(scope=EVERYONE), SERVICE, grpc.StatusCode.PERMISSION_DENIED, []),
        (
            audit_pb2.ListTenantsRequest(scope=tenancy_pb2.UserScope(user_id="alice")),
            OPERATOR,
            grpc.StatusCode.INVALID_ARGUMENT,
            ["scope"],
        ),
        (
            audit_pb2.ListTenantsRequest(scope=EVERYONE, page_token="!!"),
            OPERATOR,
            grpc.StatusCode.INVALID_ARGUMENT,
            ["page_token"],
        ),
        (
            audit_pb2.ListTenantsRequest(scope=EVERYONE, page_size=1001),
            OPERATOR,
            grpc.StatusCode.INVALID_ARGUMENT,
            ["page_size"],
        ),
    ]
    for request, metadata, code, fields in refusals:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await audit.ListTenants(request, metadata=metadata)
        assert caught.value.code() is code, request
        if fields:
            assert bad_request_fields(caught.value) == fields


async def test_times_outside_1970_to_9999_are_field_violations_not_overflows(served: RunningSuite) -> None:
    audit = audit_pb2_grpc.AuditServiceStub(served.channel)
    policy = client(served.channel, OPERATOR).stub
    far = audit_pb2.QueryRequest(scope=tenancy_pb2.UserScope(user_id="alice"))
    far.to_time.seconds = 10**15  # past year 9999: microseconds would overflow a 64-bit column
    before_epoch = policy_pb2.ListApprovalsRequest(scope=EVERYONE)
    before_epoch.created_from.seconds = -5
    with pytest.raises(grpc.aio.AioRpcError) as query:
        await audit.Query(far, metadata=SERVICE)
    with pytest.raises(grpc.aio.AioRpcError) as listing:
        await policy.ListApprovals(before_epoch, metadata=OPERATOR)
    assert query.value.code() is listing.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(query.value) == ["to_time"]
    assert bad_request_fields(listing.value) == ["created_from"]
