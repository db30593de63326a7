"""How policies and arguments are stored: JSON text, the same in every backend."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from loomflow.policy.models import Condition, Decision, Mode, Operator, Policy, Rule


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
                }
                for rule in policy.rules
            ],
        },
        separators=(",", ":"),
    )


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
            )
            for r in raw["rules"]
        ),
        mode=Mode(raw["mode"]),
        fallback=Decision(raw["fallback"]),
        version=version,
    )


def arguments_to_json(arguments: Mapping[str, Any] | None) -> str | None:
    return None if arguments is None else json.dumps(arguments, separators=(",", ":"), sort_keys=True)


def arguments_from_json(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(json.loads(text))
