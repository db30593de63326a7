"""Protobuf ↔ domain conversions for the PolicyService (used only by the servicer)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from google.protobuf import struct_pb2

from loomflow.kernel.errors import FieldViolation, InvalidArgument
from loomflow.kernel.tenancy import scope_for
from loomflow.policy.models import (
    Approval,
    ApprovalStatus,
    Condition,
    Decision,
    Mode,
    Operator,
    Policy,
    RememberedAnswer,
    Resolution,
    Rule,
    policy_problems,
)
from loomflow.v1 import policy_pb2

DECISION_TO_WIRE = {
    Decision.ALLOW: policy_pb2.DECISION_ALLOW,
    Decision.DENY: policy_pb2.DECISION_DENY,
    Decision.ASK: policy_pb2.DECISION_ASK,
}
DECISION_FROM_WIRE = {v: k for k, v in DECISION_TO_WIRE.items()}
MODE_TO_WIRE = {
    Mode.DEFAULT: policy_pb2.MODE_DEFAULT,
    Mode.ACCEPT_EDITS: policy_pb2.MODE_ACCEPT_EDITS,
    Mode.BYPASS: policy_pb2.MODE_BYPASS,
    Mode.PLAN: policy_pb2.MODE_PLAN,
}
MODE_FROM_WIRE = {v: k for k, v in MODE_TO_WIRE.items()}
OPERATOR_TO_WIRE: dict[Operator, policy_pb2.ConditionOperator] = {
    op: getattr(policy_pb2, f"CONDITION_OPERATOR_{op.name}") for op in Operator
}
OPERATOR_FROM_WIRE = {v: k for k, v in OPERATOR_TO_WIRE.items()}
STATUS_TO_WIRE = {
    ApprovalStatus.PENDING: policy_pb2.APPROVAL_STATUS_PENDING,
    ApprovalStatus.APPROVED: policy_pb2.APPROVAL_STATUS_APPROVED,
    ApprovalStatus.DENIED: policy_pb2.APPROVAL_STATUS_DENIED,
    ApprovalStatus.EXPIRED: policy_pb2.APPROVAL_STATUS_EXPIRED,
}
RESOLUTION_FROM_WIRE = {
    policy_pb2.RESOLUTION_APPROVE: Resolution.APPROVE,
    policy_pb2.RESOLUTION_DENY: Resolution.DENY,
}


def _python(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return value.number_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return StructView(value.struct_value)
    if kind == "list_value":
        return [_python(v) for v in value.list_value.values]
    return None


class StructView(Mapping[str, Any]):
    """A read-only, lazy view of a ``google.protobuf.Struct`` as a mapping of plain values.

    Nothing is converted until a rule's condition reads an argument, so checks
    against policies without conditions never pay for the arguments."""

    __slots__ = ("_fields",)

    def __init__(self, struct: struct_pb2.Struct) -> None:
        self._fields = struct.fields

    def __getitem__(self, key: str) -> Any:
        if key not in self._fields:  # reading a missing key of a message map would insert it
            raise KeyError(key)
        return _python(self._fields[key])

    def __contains__(self, key: object) -> bool:
        return key in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


def to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain JSON-like Python values."""
    return _plain_dict(StructView(struct))


def _plain_dict(view: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in view.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _plain_dict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def to_struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def policy_from_wire(message: policy_pb2.Policy, field: str = "policy") -> Policy:
    """A domain policy from the wire; INVALID_ARGUMENT naming every bad field."""
    policy = Policy(
        rules=tuple(
            Rule(
                id=rule.id,
                tool=rule.tool,
                decision=DECISION_FROM_WIRE[rule.decision],
                reason=rule.reason,
                self_approval=rule.self_approval,
                conditions=tuple(
                    Condition(c.argument, OPERATOR_FROM_WIRE[c.operator], tuple(c.values)) for c in rule.conditions
                ),
            )
            for rule in message.rules
        ),
        mode=MODE_FROM_WIRE.get(message.mode, Mode.DEFAULT),
        fallback=DECISION_FROM_WIRE.get(message.fallback, Decision.ALLOW),
    )
    problems = policy_problems(policy)
    if problems:
        summary = "; ".join(f"{field}.{p.path}: {p.message}" for p in problems)
        raise InvalidArgument(
            f"invalid policy: {summary}", [FieldViolation(f"{field}.{p.path}", p.message) for p in problems]
        )
    return policy


def policy_to_wire(policy: Policy) -> policy_pb2.Policy:
    return policy_pb2.Policy(
        rules=[
            policy_pb2.Rule(
                id=rule.id,
                tool=rule.tool,
                decision=DECISION_TO_WIRE[rule.decision],
                reason=rule.reason,
                self_approval=rule.self_approval,
                conditions=[
                    policy_pb2.ArgumentCondition(
                        argument=c.argument, operator=OPERATOR_TO_WIRE[c.operator], values=list(c.values)
                    )
                    for c in rule.conditions
                ],
            )
            for rule in policy.rules
        ],
        mode=MODE_TO_WIRE[policy.mode],
        fallback=DECISION_TO_WIRE[policy.fallback],
        version=policy.version,
    )


def approval_to_wire(approval: Approval) -> policy_pb2.Approval:
    message = policy_pb2.Approval(
        approval_id=approval.id,
        scope=scope_for(approval.tenant),
        decision_id=approval.decision_id,
        tool_name=approval.tool_name,
        arguments=to_struct(approval.arguments),
        session_id=approval.session_id,
        run_id=approval.run_id,
        reason=approval.reason,
        status=STATUS_TO_WIRE[approval.status],
        resolved_by=approval.resolved_by,
        note=approval.note,
        remember=approval.remember,
        self_approval=approval.self_approval,
        arguments_sha256=approval.arguments_sha256,
        deferred=approval.deferred,
        consumed_run_id=approval.consumed_run_id,
    )
    if approval.consumed_at:
        message.consumed_at.FromMilliseconds(approval.consumed_at)
    if approval.edited_arguments is not None:
        message.edited_arguments.CopyFrom(to_struct(approval.edited_arguments))
    message.created_at.FromMilliseconds(approval.created_at)
    message.expires_at.FromMilliseconds(approval.expires_at)
    if approval.resolved_at:
        message.resolved_at.FromMilliseconds(approval.resolved_at)
    return message


def remembered_to_wire(answer: RememberedAnswer) -> policy_pb2.RememberedAnswer:
    message = policy_pb2.RememberedAnswer(
        run_id=answer.run_id,
        tool_name=answer.tool_name,
        approval_id=answer.approval_id,
        decision=DECISION_TO_WIRE[answer.decision],
    )
    message.expires_at.FromMilliseconds(answer.expires_at)
    return message
