"""Policy's domain metrics, exported on the Prometheus endpoint (docs/observability.md).

Prometheus names: ``loomflow_policy_decisions_total{outcome}`` (allow, deny,
ask), ``loomflow_policy_pending_approvals`` (a gauge: approvals this process
opened minus those it resolved; sum it over replicas) and
``loomflow_policy_approvals_resolved_total{outcome}`` (approved, denied,
expired), ``loomflow_policy_approvals_consumed_total`` (approvals a tool call
used) and ``loomflow_policy_approval_reuse_refused_total{why}`` (an approval
presented again, or for another tool, arguments or run). Every point is
labelled ``user_id`` through the kernel's cardinality guard.
"""

from __future__ import annotations

from loomflow.kernel.telemetry import meter, tenant_label

_meter = meter("loomflow.policy")
_decisions = _meter.create_counter("loomflow_policy_decisions", unit="{decision}", description="Policy decisions")
_pending = _meter.create_up_down_counter(
    "loomflow_policy_pending_approvals", unit="{approval}", description="Approvals waiting for a human"
)
_resolved = _meter.create_counter(
    "loomflow_policy_approvals_resolved", unit="{approval}", description="Approvals resolved, by outcome"
)

_consumed = _meter.create_counter(
    "loomflow_policy_approvals_consumed", unit="{approval}", description="Approvals used by a tool call"
)
_refused = _meter.create_counter(
    "loomflow_policy_approval_reuse_refused",
    unit="{approval}",
    description="Approvals refused for a tool call: used already, or another tool, arguments or run",
)


def record_decision(tenant_key: str, outcome: str) -> None:
    """``outcome``: ``allow``, ``deny`` or ``ask``."""
    _decisions.add(1, {"user_id": tenant_label(tenant_key), "outcome": outcome})


def record_approval_opened(tenant_key: str) -> None:
    _pending.add(1, {"user_id": tenant_label(tenant_key)})


def record_approval_resolved(tenant_key: str, outcome: str) -> None:
    """``outcome``: ``approved``, ``denied`` or ``expired``."""
    user_id = tenant_label(tenant_key)
    _pending.add(-1, {"user_id": user_id})
    _resolved.add(1, {"user_id": user_id, "outcome": outcome})


def record_approval_consumed(tenant_key: str) -> None:
    _consumed.add(1, {"user_id": tenant_label(tenant_key)})


def record_approval_refused(tenant_key: str, why: str) -> None:
    """``why``: ``already_used``, ``other_tool``, ``other_arguments``, ``other_run``, ``not_approved``."""
    _refused.add(1, {"user_id": tenant_label(tenant_key), "why": why})
