"""The wire contract's tenancy invariant: every request of every RPC names its tenant.

Walks every service of the ``loomflow.v1`` package, so a future RPC whose request
lacks a required ``UserScope scope = 1`` cannot land.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool

from loomflow._vendor.buf.validate import validate_pb2
from loomflow.v1 import agent_pb2, audit_pb2, budget_pb2, memory_pb2, mux_pb2, policy_pb2, tenancy_pb2

FILES = [memory_pb2, budget_pb2, policy_pb2, audit_pb2, agent_pb2, mux_pb2]
# The extension handles, typed loosely: protoc's .pyi declares them as plain descriptors.
FIELD_RULES: Any = validate_pb2.field
ONEOF_RULES: Any = validate_pb2.oneof
EXPECTED_SERVICES = {"MemoryService", "BudgetService", "PolicyService", "AuditService", "AgentService", "MuxService"}


def all_methods() -> list[descriptor.MethodDescriptor]:
    return [m for f in FILES for s in f.DESCRIPTOR.services_by_name.values() for m in s.methods]


def test_every_service_of_the_design_is_declared() -> None:
    declared = {s for f in FILES for s in f.DESCRIPTOR.services_by_name}
    assert declared == EXPECTED_SERVICES


def carried_requests(message: descriptor.Descriptor) -> list[descriptor.Descriptor]:
    """The requests an envelope carries; none for a plain request.

    A multiplexed stream (issue 24, kernel/transport/mux*.py) sends envelopes, each carrying one
    complete request: the envelope has no scope of its own, so it is allowed only if every request
    it can carry has one. A carried request is a message field named ``*Request``; a message field
    of another type that itself carries requests is an envelope inside the envelope (a batch of calls).
    """
    found: list[descriptor.Descriptor] = []
    for field in message.fields:
        inner = field.message_type
        if inner is None or inner.GetOptions().map_entry:
            continue
        if inner.name.endswith("Request"):
            found.append(inner)
        elif inner.full_name != message.full_name:
            found += carried_requests(inner)
    return found


def scope_problems(request: descriptor.Descriptor) -> list[str]:
    """Why ``request`` (or, for an envelope, a request it carries) does not name its tenant as field 1."""
    carried = carried_requests(request)
    if carried:
        return [problem for inner in carried for problem in scope_problems(inner)]
    scope = request.fields_by_number.get(1)
    if scope is None:
        return [f"{request.full_name} has no field 1; every request must start with `scope`"]
    if scope.name != "scope":
        return [f"{request.full_name} field 1 is {scope.name!r}, not 'scope'"]
    if scope.message_type is None or scope.message_type.full_name != tenancy_pb2.UserScope.DESCRIPTOR.full_name:
        return [f"{request.full_name}.scope is not a loomflow.v1.UserScope"]
    rules: Any = scope.GetOptions().Extensions[FIELD_RULES]
    if not rules.required:
        return [f"{request.full_name}.scope is not marked (buf.validate.field).required"]
    return []


@pytest.mark.parametrize("method", all_methods(), ids=lambda m: m.full_name)
def test_every_request_carries_a_required_user_scope_as_field_1(method: descriptor.MethodDescriptor) -> None:
    assert scope_problems(method.input_type) == []


def _envelope_pool() -> descriptor_pool.DescriptorPool:
    """Two made-up envelopes beside the real requests: one carrying only scoped requests, one not."""
    pool = descriptor_pool.DescriptorPool()
    for module in (validate_pb2, tenancy_pb2, memory_pb2, budget_pb2):
        for file in _with_dependencies(module.DESCRIPTOR):
            if not _in_pool(pool, file.name):
                proto = descriptor_pb2.FileDescriptorProto()
                file.CopyToProto(proto)
                pool.Add(proto)
    test = descriptor_pb2.FileDescriptorProto(name="envelopes_test.proto", package="envelopes.test", syntax="proto3")
    test.dependency.extend([memory_pb2.DESCRIPTOR.name, budget_pb2.DESCRIPTOR.name])
    bare = test.message_type.add(name="BareRequest")
    bare.field.add(name="text", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    for name, carried in (
        ("GoodEnvelope", [".loomflow.v1.RecallRequest", ".loomflow.v1.ReserveRequest"]),
        ("BadEnvelope", [".loomflow.v1.RecallRequest", ".envelopes.test.BareRequest"]),
    ):
        envelope = test.message_type.add(name=name)
        envelope.field.add(name="id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_UINT64)
        envelope.oneof_decl.add(name="request")
        for number, type_name in enumerate(carried, start=2):
            envelope.field.add(
                name=f"r{number}",
                number=number,
                type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                type_name=type_name,
                oneof_index=0,
            )
    pool.Add(test)
    return pool


def _with_dependencies(file: descriptor.FileDescriptor) -> list[descriptor.FileDescriptor]:
    found: list[descriptor.FileDescriptor] = []
    for dependency in file.dependencies:
        found += _with_dependencies(dependency)
    return [*found, file]


def _in_pool(pool: descriptor_pool.DescriptorPool, name: str) -> bool:
    try:
        pool.FindFileByName(name)
    except KeyError:
        return False
    return True


def test_an_envelope_is_allowed_only_if_every_request_it_carries_is_scoped() -> None:
    pool = _envelope_pool()
    assert scope_problems(pool.FindMessageTypeByName("envelopes.test.GoodEnvelope")) == []
    assert scope_problems(pool.FindMessageTypeByName("envelopes.test.BadEnvelope")) == [
        "envelopes.test.BareRequest field 1 is 'text', not 'scope'"
    ]


def test_user_scope_requires_exactly_one_kind() -> None:
    oneof = tenancy_pb2.UserScope.DESCRIPTOR.oneofs_by_name["kind"]
    assert oneof.GetOptions().Extensions[ONEOF_RULES].required
    assert {f.name for f in oneof.fields} == {"user_id", "anonymous", "all_tenants"}


def test_no_client_streaming_rpcs_so_every_request_is_validated_once() -> None:
    """Only envelope streams stream from the client: each request they carry is validated on its own."""
    assert not [m.full_name for m in all_methods() if m.client_streaming and not carried_requests(m.input_type)]


def test_the_mux_envelope_is_checked_by_the_envelope_rule() -> None:
    """MuxService's stream message is an envelope: the rule walks into it and finds every carried request."""
    envelope: Any = mux_pb2.MultiplexRequest.DESCRIPTOR
    carried = {d.full_name for d in carried_requests(envelope)}
    unary = {
        m.input_type.full_name
        for f in (memory_pb2, budget_pb2, policy_pb2, audit_pb2)
        for s in f.DESCRIPTOR.services_by_name.values()
        for m in s.methods
        if not m.server_streaming
    }
    assert carried == unary, "the envelope carries exactly the unary requests of the four internal services"
    assert scope_problems(envelope) == []


# -- every string a request carries must be storable by every backend (issue 19, item 3) --------

STORABLE_PATTERN = "^[^\\x00]*$"
"""No NUL: Postgres text and jsonb cannot store one (tenancy.proto explains the rule)."""


def request_string_fields() -> list[tuple[str, str]]:
    """(path, kind) of every string field reachable from any RPC's request, nested messages included."""
    found: list[tuple[str, str]] = []
    seen: set[str] = set()

    def walk(message: descriptor.Descriptor) -> None:
        if message.full_name in seen or message.full_name.startswith("google.protobuf."):
            return  # Struct and friends are checked by the kernel (kernel/storable.py)
        seen.add(message.full_name)
        for field in message.fields:
            path = f"{message.full_name}.{field.name}"
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                for side in ("key", "value"):
                    if entry.fields_by_name[side].type == descriptor.FieldDescriptor.TYPE_STRING:
                        found.append((path, f"map {side}s"))
                value_type = entry.fields_by_name["value"].message_type
                if value_type is not None:
                    walk(value_type)
            elif entry is not None:
                walk(entry)
            elif field.type == descriptor.FieldDescriptor.TYPE_STRING:
                found.append((path, "repeated" if field.is_repeated else "single"))

    for method in all_methods():
        walk(method.input_type)
    return found


def storable_pattern(path: str, kind: str) -> str:
    message_name, field_name = path.rsplit(".", 1)
    message = next(
        d
        for f in [*FILES, tenancy_pb2]
        for d in _all_messages(f.DESCRIPTOR.message_types_by_name.values())
        if d.full_name == message_name
    )
    rules: Any = message.fields_by_name[field_name].GetOptions().Extensions[FIELD_RULES]
    if kind == "single":
        return str(rules.string.pattern)
    if kind == "repeated":
        return str(rules.repeated.items.string.pattern)
    side = rules.map.keys if kind == "map keys" else rules.map.values
    return str(side.string.pattern)


def _all_messages(messages: Any) -> list[descriptor.Descriptor]:
    out: list[descriptor.Descriptor] = []
    for message in messages:
        out.append(message)
        out.extend(_all_messages(message.nested_types))
    return out


def test_the_walk_finds_nested_repeated_and_map_strings() -> None:
    paths = dict(request_string_fields())
    assert paths.get("loomflow.v1.UserScope.user_id") == "single"
    assert paths.get("loomflow.v1.ArgumentCondition.values") == "repeated", "nested in PutPolicyRequest"
    assert "loomflow.v1.RememberRequest.metadata" in paths


def refuses_nul(pattern: str) -> bool:
    """The no-NUL rule itself, or a stricter anchored pattern (e.g. an identifier's) no NUL can match."""
    if pattern == STORABLE_PATTERN:
        return True
    samples = ("\x00", "a\x00", "\x00a", "a\x00b")
    return pattern.startswith("^") and pattern.endswith("$") and not any(re.search(pattern, s) for s in samples)


def test_a_stricter_pattern_counts_only_when_no_nul_can_match_it() -> None:
    assert refuses_nul("^[a-z][a-z0-9_-]*$")
    assert not refuses_nul("^.*$"), "'.' matches a NUL"
    assert not refuses_nul("[a-z]"), "unanchored: a NUL may stand around the match"


@pytest.mark.parametrize(("path", "kind"), request_string_fields(), ids=lambda x: str(x))
def test_every_request_string_refuses_nul(path: str, kind: str) -> None:
    assert refuses_nul(storable_pattern(path, kind)), (
        f"{path} ({kind}) lacks (buf.validate.field).string.pattern = {STORABLE_PATTERN!r}: a NUL would reach "
        "Postgres, which cannot store it (issue 19)"
    )
