"""The server kernel through real gRPC on a free port: health, reflection, validation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from loomflow.testing.suite import RunningSuite
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
from tests.support.status import bad_request_fields

SERVICES = [
    "loomflow.v1.MemoryService",
    "loomflow.v1.BudgetService",
    "loomflow.v1.PolicyService",
    "loomflow.v1.AuditService",
    "loomflow.v1.AgentService",
]

# One RPC per service with otherwise-valid fields, so only the scope can be wrong.
Call = Callable[[grpc.aio.Channel, tenancy_pb2.UserScope | None], Any]


def _scoped(cls: type[Message], scope: tenancy_pb2.UserScope | None, **fields: Any) -> Any:
    message = cls(**fields)
    if scope is not None:
        message.scope.CopyFrom(scope)  # type: ignore[attr-defined]
    return message


CALLS: dict[str, Call] = {
    "memory": lambda ch, s: memory_pb2_grpc.MemoryServiceStub(ch).Recall(
        _scoped(memory_pb2.RecallRequest, s, query="hello"), timeout=5
    ),
    "budget": lambda ch, s: budget_pb2_grpc.BudgetServiceStub(ch).GetStatus(
        _scoped(budget_pb2.GetStatusRequest, s), timeout=5
    ),
    "policy": lambda ch, s: policy_pb2_grpc.PolicyServiceStub(ch).Check(
        _scoped(policy_pb2.CheckRequest, s, tool_name="search"), timeout=5
    ),
    "audit": lambda ch, s: audit_pb2_grpc.AuditServiceStub(ch).Verify(_scoped(audit_pb2.VerifyRequest, s), timeout=5),
    "agent": lambda ch, s: agent_pb2_grpc.AgentServiceStub(ch).Run(
        _scoped(agent_pb2.RunRequest, s, options=agent_pb2.RunOptions(prompt="hi")), timeout=5
    ),
}

BAD_SCOPES: dict[str, tuple[tenancy_pb2.UserScope | None, str]] = {
    "missing": (None, "scope"),
    "neither_kind": (tenancy_pb2.UserScope(), "scope.kind"),
    "empty": (tenancy_pb2.UserScope(user_id=""), "scope.user_id"),
    "sentinel": (tenancy_pb2.UserScope(user_id="__jeeves_anon_user__"), "scope.user_id"),
    "sentinel_upper_case": (tenancy_pb2.UserScope(user_id="__JEEVES_ANON_USER__"), "scope.user_id"),
    "control_character": (tenancy_pb2.UserScope(user_id="ali\x00ce"), "scope.user_id"),
    "newline": (tenancy_pb2.UserScope(user_id="alice\nbob"), "scope.user_id"),
    "too_long": (tenancy_pb2.UserScope(user_id="a" * 257), "scope.user_id"),
    "leading_space": (tenancy_pb2.UserScope(user_id=" alice"), "scope.user_id"),
}


async def test_health_reports_serving_for_each_service_and_overall(suite: RunningSuite) -> None:
    stub = health_pb2_grpc.HealthStub(suite.channel)
    for name in ["", *SERVICES]:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, f"health of {name or 'server'}"


async def test_reflection_lists_the_five_loomflow_services(suite: RunningSuite) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(suite.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    listed: set[str] = set()
    async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
        listed.update(s.name for s in reply.list_services_response.service)
    assert {s for s in listed if s.startswith("loomflow.v1.")} == set(SERVICES)


@pytest.mark.parametrize("service", sorted(CALLS))
@pytest.mark.parametrize("case", sorted(BAD_SCOPES))
async def test_bad_scope_is_invalid_argument_naming_the_field(suite: RunningSuite, service: str, case: str) -> None:
    scope, field = BAD_SCOPES[case]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await CALLS[service](suite.channel, scope)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{case} on {service}: got {error.code()}"
    fields = bad_request_fields(error)
    assert field in fields, f"{case} on {service}: BadRequest names {fields}, expected {field!r}"


async def test_valid_scopes_pass_validation(suite: RunningSuite) -> None:
    # Past validation a call reaches its service: whatever it answers, it is not a scope error.
    for scope in (tenancy_pb2.UserScope(user_id="alice"), tenancy_pb2.UserScope(anonymous=tenancy_pb2.Anonymous())):
        code = grpc.StatusCode.OK
        try:
            await CALLS["memory"](suite.channel, scope)
        except grpc.aio.AioRpcError as error:
            code = error.code()
        assert code not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL), f"{scope} refused: {code}"


async def test_non_scope_fields_are_validated_too(suite: RunningSuite) -> None:
    stub = memory_pb2_grpc.MemoryServiceStub(suite.channel)
    request = memory_pb2.RecallRequest(scope=tenancy_pb2.UserScope(user_id="alice"), query="", limit=-1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Recall(request, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"query", "limit"} <= set(bad_request_fields(caught.value))
