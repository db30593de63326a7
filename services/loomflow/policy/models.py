"""Policy's domain types: plain data, no gRPC, no storage.

A :class:`Policy` is an ordered list of :class:`Rule` objects, a :class:`Mode`
and a fallback decision. :func:`policy_problems` is the one validator every way
into the service uses (the wire, the YAML file), so a rule refused by
``PutPolicy`` is refused by the file loader with the same words.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_POLICY_KEY = ""
"""Store key of the default policy. A user id has at least one character, so it never collides."""

MAX_RULES = 1000
MAX_CONDITIONS = 32
MAX_VALUES = 256
MAX_RULE_ID = 128
MAX_TOOL_PATTERN = 256
MAX_REASON = 1024
MAX_ARGUMENT_PATH = 256

RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")


class Decision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    ASK = "ask"


class Mode(enum.Enum):
    """How rules apply; the precise semantics are :func:`loomflow.policy.engine.decide`'s."""

    DEFAULT = "default"
    ACCEPT_EDITS = "accept-edits"
    BYPASS = "bypass"
    PLAN = "plan"


class Operator(enum.Enum):
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    MATCHES = "matches"
    NOT_MATCHES = "not_matches"
    IN = "in"
    NOT_IN = "not_in"
    EXISTS = "exists"
    LESS_THAN = "less_than"
    GREATER_THAN = "greater_than"


ONE_VALUE = frozenset({Operator.EQUALS, Operator.NOT_EQUALS, Operator.LESS_THAN, Operator.GREATER_THAN})
SOME_VALUES = frozenset({Operator.MATCHES, Operator.NOT_MATCHES, Operator.IN, Operator.NOT_IN})
NUMERIC = frozenset({Operator.LESS_THAN, Operator.GREATER_THAN})


class Tag:
    """Tool tags the Agent sends with every check (``CheckRequest.tool_tags``)."""

    DESTRUCTIVE = "destructive"
    EDIT = "edit"
    READ_ONLY = "read_only"


@dataclass(frozen=True)
class Condition:
    """One test of an argument; ``argument`` is a dotted path (``options.force``, ``paths.0``)."""

    argument: str
    operator: Operator
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    id: str
    tool: str
    decision: Decision
    conditions: tuple[Condition, ...] = ()
    reason: str = ""
    self_approval: bool = False
    """An ask rule whose approvals the tenant may resolve themself (a user credential of that
    tenant); without it only an operator may. Never a service credential."""


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    mode: Mode = Mode.DEFAULT
    fallback: Decision = Decision.ALLOW
    version: int = 0


BUILT_IN_DEFAULT = Policy()
"""What applies when neither a stored default nor a policy file names one:
no rules, default mode, fallback allow (so destructive tools ask)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy; ``path`` is like ``rules[2].conditions[0].values``."""

    path: str
    message: str


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _text_problems(path: str, text: str, min_len: int, max_len: int) -> list[Problem]:
    if len(text) < min_len:
        return [Problem(path, "must not be empty")]
    if len(text) > max_len:
        return [Problem(path, f"must be at most {max_len} characters (got {len(text)})")]
    return []


def condition_problems(path: str, condition: Condition) -> list[Problem]:
    found = _text_problems(f"{path}.argument", condition.argument, 1, MAX_ARGUMENT_PATH)
    if not found and any(not part for part in condition.argument.split(".")):
        found.append(Problem(f"{path}.argument", f"{condition.argument!r} has an empty path segment"))
    values, op = condition.values, condition.operator
    where = f"{path}.values"
    if len(values) > MAX_VALUES:
        found.append(Problem(where, f"at most {MAX_VALUES} values (got {len(values)})"))
    if op in ONE_VALUE and len(values) != 1:
        found.append(Problem(where, f"{op.value} takes exactly one value (got {len(values)})"))
    elif op in SOME_VALUES and not values:
        found.append(Problem(where, f"{op.value} takes at least one value"))
    elif op is Operator.EXISTS and values:
        found.append(Problem(where, "exists takes no value"))
    if op in NUMERIC:
        for i, value in enumerate(values):
            if not _is_number(value):
                found.append(Problem(f"{where}[{i}]", f"{op.value} needs a number (got {value!r})"))
    return found


def rule_problems(path: str, rule: Rule) -> list[Problem]:
    found = _text_problems(f"{path}.id", rule.id, 1, MAX_RULE_ID)
    if not found and not RULE_ID.match(rule.id):
        found.append(
            Problem(f"{path}.id", f"{rule.id!r}: use letters, digits and _ . : / - (starting with a letter or digit)")
        )
    found += _text_problems(f"{path}.tool", rule.tool, 1, MAX_TOOL_PATTERN)
    found += _text_problems(f"{path}.reason", rule.reason, 0, MAX_REASON)
    if len(rule.conditions) > MAX_CONDITIONS:
        found.append(Problem(f"{path}.conditions", f"at most {MAX_CONDITIONS} conditions (got {len(rule.conditions)})"))
    for i, condition in enumerate(rule.conditions):
        found += condition_problems(f"{path}.conditions[{i}]", condition)
    if rule.self_approval and rule.decision is not Decision.ASK:
        found.append(Problem(f"{path}.self_approval", "only an ask rule creates approvals to self-approve"))
    return found


def policy_problems(policy: Policy) -> list[Problem]:
    """Everything wrong with ``policy`` (empty when it is valid)."""
    found: list[Problem] = []
    if len(policy.rules) > MAX_RULES:
        found.append(Problem("rules", f"at most {MAX_RULES} rules (got {len(policy.rules)})"))
    first_use: dict[str, int] = {}
    for i, rule in enumerate(policy.rules):
        found += rule_problems(f"rules[{i}]", rule)
        if rule.id in first_use:
            first = first_use[rule.id]
            found.append(Problem(f"rules[{i}].id", f"duplicate rule id {rule.id!r} (first used by rules[{first}])"))
        else:
            first_use[rule.id] = i
    return found


@dataclass(frozen=True)
class Verdict:
    """What the engine decided and why. ``matched_rule`` is empty when the mode or fallback decided."""

    decision: Decision
    matched_rule: str
    reason: str


class ApprovalStatus(enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


class Resolution(enum.Enum):
    APPROVE = "approve"
    DENY = "deny"


@dataclass(frozen=True)
class ApprovalRequest:
    """What the Agent asks a human to decide, addressed to ``tenant``."""

    tenant: str
    tool_name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    decision_id: str = ""
    session_id: str = ""
    run_id: str = ""
    reason: str = ""
    self_approval: bool = False
    deferred: bool = False


@dataclass(frozen=True)
class Approval:
    """A durable approval. Times are Unix milliseconds; ``resolved_at`` is 0 while pending."""

    id: str
    tenant: str
    tool_name: str
    arguments: Mapping[str, Any]
    decision_id: str
    session_id: str
    run_id: str
    reason: str
    status: ApprovalStatus
    created_at: int
    expires_at: int
    edited_arguments: Mapping[str, Any] | None = None
    resolved_by: str = ""
    note: str = ""
    remember: bool = False
    resolved_at: int = 0
    self_approval: bool = False
    """The rule that asked lets the tenant resolve this approval themself (see :class:`Rule`)."""
    arguments_sha256: str = ""
    """SHA-256 of the canonical arguments asked about: the only arguments it can be used for."""
    deferred: bool = False
    """The asking run did not wait: the run that resumes uses it. Otherwise only the asking run may."""
    consumed_at: int = 0
    """When a run used it (0: not yet). An approval lets exactly one tool call run."""
    consumed_run_id: str = ""

    @property
    def pending(self) -> bool:
        return self.status is ApprovalStatus.PENDING


@dataclass(frozen=True)
class ResolutionInput:
    """A human's answer to one approval."""

    resolution: Resolution
    resolved_by: str
    edited_arguments: Mapping[str, Any] | None = None
    remember: bool = False
    note: str = ""

    @property
    def status(self) -> ApprovalStatus:
        return ApprovalStatus.APPROVED if self.resolution is Resolution.APPROVE else ApprovalStatus.DENIED


@dataclass(frozen=True)
class Remembered:
    """An answer remembered for one tenant, run and tool."""

    approval_id: str
    decision: Decision


@dataclass(frozen=True)
class RememberedAnswer:
    """A stored remembered answer, as Export returns it (times in Unix ms)."""

    run_id: str
    tool_name: str
    approval_id: str
    decision: Decision
    expires_at: int


@dataclass(frozen=True)
class ForgetReceipt:
    """What a Forget erased."""

    policy_removed: bool = False
    approvals_deleted: int = 0
    pending_approvals_deleted: int = 0
    remembered_deleted: int = 0


@dataclass(frozen=True)
class TenantExport:
    """Everything Policy stores about one tenant: its own policy, approvals (oldest first), remembered answers."""

    policy: Policy | None
    approvals: tuple[Approval, ...]
    remembered: tuple[RememberedAnswer, ...]
