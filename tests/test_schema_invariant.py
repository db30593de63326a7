"""The wire contract's tenancy invariant: every request of every RPC names its tenant.

Walks every service of the ``loomflow.v1`` package, so a future RPC whose request
lacks a required ``UserScope scope = 1`` cannot land.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor

from loomflow._vendor.buf.validate import validate_pb2
from loomflow.v1 import agent_pb2, audit_pb2, budget_pb2, memory_pb2, policy_pb2, tenancy_pb2

FILES = [memory_pb2, budget_pb2, policy_pb2, audit_pb2, agent_pb2]
# The extension handles, typed loosely: protoc's .pyi declares them as plain descriptors.
FIELD_RULES: Any = validate_pb2.field
ONEOF_RULES: Any = validate_pb2.oneof
EXPECTED_SERVICES = {"MemoryService", "BudgetService", "PolicyService", "AuditService", "AgentService"}


def all_methods() -> list[descriptor.MethodDescriptor]:
    return [m for f in FILES for s in f.DESCRIPTOR.services_by_name.values() for m in s.methods]


def test_every_service_of_the_design_is_declared() -> None:
    declared = {s for f in FILES for s in f.DESCRIPTOR.services_by_name}
    assert declared == EXPECTED_SERVICES


@pytest.mark.parametrize("method", all_methods(), ids=lambda m: m.full_name)
def test_every_request_carries_a_required_user_scope_as_field_1(method: descriptor.MethodDescriptor) -> None:
    request = method.input_type
    scope = request.fields_by_number.get(1)
    assert scope is not None, f"{request.full_name} has no field 1; every request must start with `scope`"
    assert scope.name == "scope", f"{request.full_name} field 1 is {scope.name!r}, not 'scope'"
    assert scope.message_type is tenancy_pb2.UserScope.DESCRIPTOR, (
        f"{request.full_name}.scope is not a loomflow.v1.UserScope"
    )
    rules: Any = scope.GetOptions().Extensions[FIELD_RULES]
    assert rules.required, f"{request.full_name}.scope is not marked (buf.validate.field).required"


def test_user_scope_requires_exactly_one_kind() -> None:
    oneof = tenancy_pb2.UserScope.DESCRIPTOR.oneofs_by_name["kind"]
    assert oneof.GetOptions().Extensions[ONEOF_RULES].required
    assert {f.name for f in oneof.fields} == {"user_id", "anonymous"}


def test_no_client_streaming_rpcs_so_every_request_is_validated_once() -> None:
    assert not [m.full_name for m in all_methods() if m.client_streaming]
