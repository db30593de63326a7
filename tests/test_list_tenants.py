"""AgentService/ListTenants through a secure suite: every tenant the Audit service has a chain for,
in id order and paged, with its last-seen time and the services holding data for it; refused for
anyone but an operator. The Audit service's own ListTenants is tested on every sink in
tests/audit/test_tenant_list.py and over gRPC in tests/test_operator_scope.py."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from loomflow.testing.suite import running_suite
from loomflow.v1 import agent_pb2, agent_pb2_grpc, audit_pb2, audit_pb2_grpc, tenancy_pb2
from tests.audit.conftest import fresh_key_texts
from tests.policy.grpc_support import OPERATOR, SERVICE, user

EVERYONE = tenancy_pb2.UserScope(all_tenants=tenancy_pb2.AllTenants())


async def test_list_tenants_names_the_services_holding_each_tenants_data_for_an_operator_only(
    tmp_path: Path,
) -> None:
    overrides = {"audit": fresh_key_texts().settings()}
    async with running_suite(tmp_path, insecure=False, overrides=overrides) as served:
        agent = agent_pb2_grpc.AgentServiceStub(served.channel)
        audit = audit_pb2_grpc.AuditServiceStub(served.channel)
        alice = tenancy_pb2.UserScope(user_id="alice")
        await agent.Run(
            agent_pb2.RunRequest(scope=alice, options=agent_pb2.RunOptions(prompt="hello")), metadata=user("alice")
        )
        bobs = await audit.Append(
            audit_pb2.AppendRequest(scope=tenancy_pb2.UserScope(user_id="bob"), actor="agent", action="tool_call"),
            metadata=SERVICE,
        )

        paged = agent_pb2.AgentServiceListTenantsRequest(scope=EVERYONE, page_size=1)
        first = await agent.ListTenants(paged, metadata=OPERATOR)
        paged.page_token = first.next_page_token
        second = await agent.ListTenants(paged, metadata=OPERATOR)
        assert not second.next_page_token
        rows = {t.scope.user_id: t for t in (*first.tenants, *second.tenants)}
        assert list(rows) == ["alice", "bob"], "not every tenant, or not in id order"
        assert {"memory", "budget", "audit"} <= set(rows["alice"].services), rows["alice"].services
        assert list(rows["bob"].services) == ["audit"], "a service without bob's data was named"
        assert rows["bob"].last_seen_time == bobs.ts

        refusals = [
            (
                agent_pb2.AgentServiceListTenantsRequest(scope=EVERYONE),
                user("alice"),
                grpc.StatusCode.PERMISSION_DENIED,
            ),
            (agent_pb2.AgentServiceListTenantsRequest(scope=alice), OPERATOR, grpc.StatusCode.INVALID_ARGUMENT),
            (
                agent_pb2.AgentServiceListTenantsRequest(scope=EVERYONE, page_size=101),
                OPERATOR,
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (
                agent_pb2.AgentServiceListTenantsRequest(scope=EVERYONE, page_token="!!"),
                OPERATOR,
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
        ]
        for request, metadata, code in refusals:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await agent.ListTenants(request, metadata=metadata)
            assert caught.value.code() is code, request
