"""A NUL byte is refused at the wire, in every string field of every request, on every backend (issue 19, item 3).

Postgres ``text`` and ``jsonb`` cannot store U+0000: before the fix a NUL in an
audit ``actor``, a budget ``call_id`` or a policy ``tool_name`` answered INTERNAL
or UNAVAILABLE on Postgres backends. Now every string field of every request
(nested, repeated and map fields included) carries a protovalidate rule, and the
kernel checks the keys and string values of ``google.protobuf.Struct`` fields, so a
NUL is INVALID_ARGUMENT with a field violation before any backend sees it, and
the backend stays healthy for the next, ordinary request.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory, struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from loomflow.testing.processes import ServeProcess
from loomflow.v1 import (
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
from tests.reliability.rpcs import ALL_RPCS, Rpc
from tests.reliability.test_tenant_attacks import params, serve

NUL = "a\x00b"
TENANT = "nul-tester"


def string_paths(message: Descriptor, seen: frozenset[str] = frozenset()) -> Iterator[list[FieldDescriptor]]:
    """Every path from ``message`` to a string field (through singular, repeated and map fields)."""
    for field in message.fields:
        nested = field.message_type
        if nested is not None and nested.GetOptions().map_entry:
            yield [field]
        elif nested is not None:
            if nested.full_name.startswith("google.protobuf.") or nested.full_name in seen:
                continue
            if nested.full_name == tenancy_pb2.UserScope.DESCRIPTOR.full_name:
                continue  # the scope's user_id has its own suite (control characters, look-alikes)
            for rest in string_paths(nested, seen | {message.full_name}):
                yield [field, *rest]
        elif field.type == FieldDescriptor.TYPE_STRING:
            yield [field]


def with_nul(method: MethodDescriptor, path: list[FieldDescriptor], in_key: bool = False) -> Message:
    """A request of ``method`` for TENANT whose field at ``path`` holds a NUL (one element for repeated/map)."""
    request = message_factory.GetMessageClass(method.input_type)()
    target: Any = request
    target.scope.user_id = TENANT
    for field in path[:-1]:
        target = getattr(target, field.name).add() if field.is_repeated else getattr(target, field.name)
    last = path[-1]
    if last.message_type is not None:  # a map<string, string>
        if in_key:
            getattr(target, last.name)[NUL] = "v"
        else:
            getattr(target, last.name)["k"] = NUL
    elif last.is_repeated:
        getattr(target, last.name).append(NUL)
    else:
        setattr(target, last.name, NUL)
    return request


STRING_RULE, STRUCT_RULE = "string.pattern", "struct.no_nul"
Case = tuple[Rpc, str, Message, str]
"""(rpc, which field, the request, the violation id expected)"""


def cases(rpcs: list[Rpc]) -> Iterator[Case]:
    for rpc in rpcs:
        for path in string_paths(rpc.method.input_type):
            label = ".".join(f.name for f in path)
            if path[-1].message_type is not None:
                yield rpc, f"{label} (key)", with_nul(rpc.method, path, in_key=True), STRING_RULE
                yield rpc, f"{label} (value)", with_nul(rpc.method, path), STRING_RULE
            else:
                yield rpc, label, with_nul(rpc.method, path), STRING_RULE


def violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    trailers: Any = error.trailing_metadata()
    raw = next((v for k, v in trailers or () if k == "grpc-status-details-bin"), b"")
    found: list[tuple[str, str]] = []
    for detail in status_pb2.Status.FromString(raw).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend((v.field, v.reason) for v in bad.field_violations)
    return found


def assert_refused(error: grpc.RpcError, rpc: Rpc, label: str, reason: str) -> None:
    code = error.code()
    assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{rpc.id} with a NUL in {label}: {code} {error.details()}"
    top = label.split(".")[0].split(" ")[0]
    named = [(f, r) for f, r in violations(error) if f.startswith(top) and r == reason]
    assert named, f"{rpc.id}: no {reason} violation naming {label}: {violations(error)}"


DEEP = struct_pb2.Struct(fields={"b": struct_pb2.Value(string_value=NUL)})
STRUCT_CASES = {
    "key": struct_pb2.Struct(fields={"pa\x00th": struct_pb2.Value(string_value="x")}),
    "value": struct_pb2.Struct(fields={"path": struct_pb2.Value(string_value=NUL)}),
    "nested value": struct_pb2.Struct(
        fields={
            "a": struct_pb2.Value(
                list_value=struct_pb2.ListValue(
                    values=[
                        struct_pb2.Value(
                            struct_value=struct_pb2.Struct(fields={"b": struct_pb2.Value(string_value=NUL)})
                        )
                    ]
                )
            )
        }
    ),
}


def struct_requests(payload: struct_pb2.Struct) -> list[Case]:
    scope = tenancy_pb2.UserScope(user_id=TENANT)
    by_id = {rpc.id: rpc for rpc in ALL_RPCS}
    return [
        (
            by_id["PolicyService.Check"],
            "arguments",
            policy_pb2.CheckRequest(scope=scope, tool_name="t", arguments=payload),
            STRUCT_RULE,
        ),
        (
            by_id["AuditService.Append"],
            "payload",
            audit_pb2.AppendRequest(scope=scope, actor="agent", action="tool_call", payload=payload),
            STRUCT_RULE,
        ),
    ]


# -- every RPC of every service, one process (embedded backends) -------------------------------


ALL_CASES = list(cases(ALL_RPCS)) + [c for payload in STRUCT_CASES.values() for c in struct_requests(payload)]


def test_the_cases_cover_every_kind_of_field() -> None:
    labels = {f"{rpc.id} {label}" for rpc, label, _, _ in ALL_CASES}
    for expected in (
        "AuditService.Append actor",
        "BudgetService.Reserve call_id",
        "PolicyService.Check tool_name",
        "PolicyService.Check tool_tags",
        "PolicyService.PutPolicy policy.rules.conditions.values",
        "MemoryService.Remember metadata (key)",
        "AgentService.Run options.approval_ids",
        "AuditService.Append payload",
    ):
        assert expected in labels, f"no case for {expected}"


@pytest.fixture(scope="module")
def channel(served: ServeProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(served.address) as opened:
        yield opened


@pytest.mark.parametrize(
    ("rpc", "label", "request_", "reason"), ALL_CASES, ids=[f"{c[0].id}-{c[1]}-{c[3]}" for c in ALL_CASES]
)
def test_a_nul_in_any_request_string_or_struct_is_invalid_argument(
    channel: grpc.Channel, rpc: Rpc, label: str, request_: Message, reason: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        rpc.call(channel, request_, timeout=10)
    assert_refused(caught.value, rpc, label, reason)


# -- the same on every backend of every stateful service ---------------------------------------


async def call(channel: grpc.aio.Channel, rpc: Rpc, request: Message) -> None:
    response = message_factory.GetMessageClass(rpc.method.output_type)
    serialize = type(request).SerializeToString
    if not rpc.streaming:
        await channel.unary_unary(rpc.path, request_serializer=serialize, response_deserializer=response.FromString)(
            request, timeout=10
        )
        return
    stream = channel.unary_stream(rpc.path, request_serializer=serialize, response_deserializer=response.FromString)
    async for _ in stream(request, timeout=10):
        pass


async def refused_on(channel: grpc.aio.Channel, rpcs: list[Rpc]) -> None:
    for rpc, label, request, reason in ALL_CASES:
        if rpc not in rpcs:
            continue
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(channel, rpc, request)
        assert_refused(caught.value, rpc, label, reason=reason)


def service_rpcs(service: str) -> list[Rpc]:
    return [rpc for rpc in ALL_RPCS if rpc.method.containing_service.name == service]


@pytest.mark.parametrize("backend", params("memory", "sqlite", "postgres", "redis", "chroma"))
async def test_memory_refuses_nul_on_every_backend(backend: str, tmp_path: Path) -> None:
    async with serve("memory", backend, tmp_path, "nul") as channel:
        await refused_on(channel, service_rpcs("MemoryService"))
        stub = memory_pb2_grpc.MemoryServiceStub(channel)
        scope = tenancy_pb2.UserScope(user_id=TENANT)
        await stub.Remember(memory_pb2.RememberRequest(scope=scope, input="still healthy"), timeout=10)


@pytest.mark.parametrize("backend", params("inprocess", "redis", "postgres"))
async def test_budget_refuses_nul_on_every_backend(backend: str, tmp_path: Path) -> None:
    async with serve("budget", backend, tmp_path, "nul") as channel:
        await refused_on(channel, service_rpcs("BudgetService"))
        stub = budget_pb2_grpc.BudgetServiceStub(channel)
        await stub.GetStatus(budget_pb2.GetStatusRequest(scope=tenancy_pb2.UserScope(user_id=TENANT)), timeout=10)


@pytest.mark.parametrize("backend", params("sqlite", "postgres"))
async def test_policy_refuses_nul_on_every_backend(backend: str, tmp_path: Path) -> None:
    async with serve("policy", backend, tmp_path, "nul") as channel:
        await refused_on(channel, service_rpcs("PolicyService"))
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        scope = tenancy_pb2.UserScope(user_id=TENANT)
        await stub.Check(policy_pb2.CheckRequest(scope=scope, tool_name="search"), timeout=10)


@pytest.mark.parametrize("backend", params("file", "postgres"))
async def test_audit_refuses_nul_on_every_backend(backend: str, tmp_path: Path) -> None:
    async with serve("audit", backend, tmp_path, "nul") as channel:
        await refused_on(channel, service_rpcs("AuditService"))
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        scope = tenancy_pb2.UserScope(user_id=TENANT)
        await stub.Append(audit_pb2.AppendRequest(scope=scope, actor="agent", action="ok"), timeout=10)
