"""Policy Forget and Export through a real server: the wire, caches, replicas, access."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from loomflow.testing.suite import RunningSuite, running_suite
from loomflow.v1 import policy_pb2
from tests.policy.conftest import Backend
from tests.policy.grpc_support import OPERATOR, SERVICE, Client, client, rule, scope, user
from tests.policy.test_durability_and_replicas import eventually, policy_server
from tests.support.status import bad_request_fields

ALLOW, DENY, ASK = policy_pb2.DECISION_ALLOW, policy_pb2.DECISION_DENY, policy_pb2.DECISION_ASK
NO_SHELL = policy_pb2.Policy(rules=[rule("no-shell", "shell", DENY)])


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[RunningSuite]:
    async with running_suite(tmp_path, services="policy", insecure=False) as running:
        yield running


async def forget(c: Client, user_id: str) -> policy_pb2.PolicyServiceForgetResponse:
    return await c.stub.Forget(policy_pb2.PolicyServiceForgetRequest(scope=scope(user_id)), metadata=c.metadata)


async def export(c: Client, user_id: str) -> list[policy_pb2.PolicyServiceExportResponse]:
    request = policy_pb2.PolicyServiceExportRequest(scope=scope(user_id))
    return [record async for record in c.stub.Export(request, metadata=c.metadata)]


async def test_forget_and_export_through_the_wire(served: RunningSuite) -> None:
    agent, operator = client(served.channel, SERVICE), client(served.channel, OPERATOR)
    for tenant in ("alice", "bob"):
        await operator.put_policy(tenant, NO_SHELL)
        await agent.request_approval(tenant, "delete_file", run_id="run-1")
    assert (await agent.check("alice", "shell")).decision == DENY  # alice's own policy, now cached

    records = await export(agent, "alice")
    assert [r.WhichOneof("record") for r in records] == ["policy", "approval"]
    assert records[1].approval.scope.user_id == "alice"
    assert records[1].approval.tool_name == "delete_file"

    receipt = await forget(agent, "alice")
    assert (receipt.policy_removed, receipt.approvals_deleted, receipt.pending_approvals_deleted) == (True, 1, 1)
    assert await export(agent, "alice") == []
    # The cached policy went with it: the default applies now.
    assert (await agent.check("alice", "shell")).decision == ALLOW
    assert (await agent.get_policy("alice")).is_default
    # Bob is untouched.
    assert (await agent.check("bob", "shell")).decision == DENY
    assert len(await export(agent, "bob")) == 2
    # Idempotent.
    assert await forget(agent, "alice") == policy_pb2.PolicyServiceForgetResponse()


async def test_end_users_cannot_forget_or_export_through_policy_and_bad_scopes_are_invalid(
    served: RunningSuite,
) -> None:
    alice = client(served.channel, user("alice"))
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await forget(alice, "alice")
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    agent = client(served.channel, SERVICE)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await forget(agent, "__jeeves_anon_user__")
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "scope.user_id" in bad_request_fields(bad.value)


@pytest.mark.postgres
async def test_a_forget_on_one_replica_drops_the_policy_another_replica_cached(
    postgres_backend: Backend, tmp_path: Path
) -> None:
    dsn = postgres_backend.dsn
    async with (
        policy_server(tmp_path / "a", dsn) as (agent_a, operator_a),
        policy_server(tmp_path / "b", dsn) as (agent_b, _),
    ):
        await operator_a.put_policy("alice", NO_SHELL)
        await eventually(lambda: agent_b.check("alice", "shell"), lambda r: r.decision == DENY)  # cached on B
        await forget(agent_a, "alice")
        await eventually(lambda: agent_b.check("alice", "shell"), lambda r: r.decision == ALLOW)
        await asyncio.sleep(0.3)  # a few refresh rounds: the dropped policy must not come back
        assert (await agent_b.check("alice", "shell")).decision == ALLOW
