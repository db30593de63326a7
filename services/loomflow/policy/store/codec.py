"""How policies and arguments are stored: JSON text, the same in every backend."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from loomflow.policy.models import Approval, ApprovalStatus, Condition, Decision, Mode, Operator, Policy, Rule


def policy_to_json(policy: Policy) -> str:
    return json.dumps(
        {
            "mode": policy.mode.value,
            "fallback": policy.fallback.value,
            "rules": [
                {
                    "id": rule.id,
                    "tool": rule.tool,
                    "decision": rule.decision.value,
                    "reason": rule.reason,
                    "conditions": [[c.argument, c.operator.value, list(c.values)] for c in rule.conditions],
                    **({"self_approval": True} if rule.self_approval else {}),
                }
                for rule in policy.rules
            ],
        },
        separators=(",", ":"),
    )


FORGOTTEN_POLICY = ""
"""The body of a tenant's policy row after Forget: a versioned change (so every replica's cache drops
the policy, by notification or by polling the change feed) that reads as "no policy of its own"."""


def stored_policy(body: str, version: int) -> Policy | None:
    """The policy a stored row holds; None for a Forget's marker."""
    return None if body == FORGOTTEN_POLICY else policy_from_json(body, version)


def policy_from_json(text: str, version: int) -> Policy:
    raw = json.loads(text)
    return Policy(
        rules=tuple(
            Rule(
                id=r["id"],
                tool=r["tool"],
                decision=Decision(r["decision"]),
                reason=r["reason"],
                conditions=tuple(Condition(a, Operator(op), tuple(values)) for a, op, values in r["conditions"]),
                self_approval=bool(r.get("self_approval", False)),
            )
            for r in raw["rules"]
        ),
        mode=Mode(raw["mode"]),
        fallback=Decision(raw["fallback"]),
        version=version,
    )


def arguments_to_json(arguments: Mapping[str, Any] | None) -> str | None:
    return None if arguments is None else json.dumps(arguments, separators=(",", ":"), sort_keys=True)


def arguments_digest(arguments: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of tool arguments: what an approval is bound to."""
    text = arguments_to_json(arguments) or ""
    return hashlib.sha256(text.encode()).hexdigest()


def arguments_from_json(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(json.loads(text))


APPROVAL_COLUMNS = (
    "tenant, id, tool_name, arguments, decision_id, session_id, run_id, reason, status, created_at, "
    "expires_at, edited_arguments, resolved_by, note, remember, resolved_at, self_approval, "
    "arguments_sha256, deferred, consumed_at, consumed_run_id"
)


def approval_from_row(row: Any) -> Approval:
    """An approval from a row in ``APPROVAL_COLUMNS`` order ."""
    return Approval(
        tenant=row[0],
        id=row[1],
        tool_name=row[2],
        arguments=arguments_from_json(row[3]) or {},
        decision_id=row[4],
        session_id=row[5],
        run_id=row[6],
        reason=row[7],
        status=ApprovalStatus(row[8]),
        created_at=row[9],
        expires_at=row[10],
        edited_arguments=arguments_from_json(row[11]),
        resolved_by=row[12],
        note=row[13],
        remember=bool(row[14]),
        resolved_at=row[15],
        # Rows notified by a replica of an older version carry fewer columns.
        self_approval=bool(row[16]) if len(row) > 16 else False,
        arguments_sha256=row[17] if len(row) > 17 else "",
        deferred=bool(row[18]) if len(row) > 18 else False,
        consumed_at=row[19] if len(row) > 19 else 0,
        consumed_run_id=row[20] if len(row) > 20 else "",
    )


def approval_values(a: Approval) -> tuple[Any, ...]:
    return (
        a.tenant,
        a.id,
        a.tool_name,
        arguments_to_json(a.arguments),
        a.decision_id,
        a.session_id,
        a.run_id,
        a.reason,
        a.status.value,
        a.created_at,
        a.expires_at,
        arguments_to_json(a.edited_arguments),
        a.resolved_by,
        a.note,
        int(a.remember),
        a.resolved_at,
        int(a.self_approval),
        a.arguments_sha256,
        int(a.deferred),
        a.consumed_at,
        a.consumed_run_id,
    )


def approval_to_json(approval: Approval) -> str:
    return json.dumps(approval_values(approval), separators=(",", ":"))


def approval_from_json(text: str) -> Approval:
    return approval_from_row(json.loads(text))
