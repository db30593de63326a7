"""The Prometheus names loomflow exports: a contract dashboards, alerts and docs rely on.

The OpenTelemetry Prometheus exporter derives them from the instrument (``s``
becomes ``_seconds``, counters get ``_total``, ``{annotation}`` units add
nothing). Renaming one breaks every dashboard, so the tests pin them here.
"""

from __future__ import annotations

COUNTERS = {
    "loomflow_rpc_requests_total": ("service", "code"),
    "loomflow_rate_limited_total": ("limit",),
    "loomflow_auth_refusals_total": ("service", "code"),
    "loomflow_memory_episodes_stored_total": (),
    "loomflow_memory_evicted_users_total": ("reason",),
    "loomflow_budget_tokens_charged_total": ("kind",),
    "loomflow_budget_cost_charged_usd_total": (),
    "loomflow_budget_reservations_total": ("outcome",),
    "loomflow_budget_refusals_total": ("limit",),
    "loomflow_policy_decisions_total": ("outcome",),
    "loomflow_policy_approvals_resolved_total": ("outcome",),
    "loomflow_audit_appends_total": (),
    "loomflow_audit_verify_failures_total": (),
    "loomflow_agent_runs_total": ("outcome",),
    "loomflow_agent_turns_total": (),
    "loomflow_agent_tool_calls_total": ("outcome",),
}
"""Counter sample names → their labels besides ``user_id``."""

GAUGES = {
    "loomflow_policy_pending_approvals": (),
}

HISTOGRAMS = {
    "loomflow_rpc_duration_seconds": ("service", "method", "code"),
    "loomflow_memory_recall_duration_seconds": (),
    "loomflow_agent_model_duration_seconds": ("model",),
}
"""Histogram family names (samples: ``_bucket``, ``_count``, ``_sum``) → their labels. No ``user_id``:
per-tenant labels live only on counters (and gauges), which keeps the series per tenant small."""


def sample_names() -> set[str]:
    """Every sample name a query may use."""
    names = set(COUNTERS) | set(GAUGES)
    for family in HISTOGRAMS:
        names |= {f"{family}_bucket", f"{family}_count", f"{family}_sum"}
    return names


def family_of(sample: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if sample.endswith(suffix) and sample[: -len(suffix)] in HISTOGRAMS:
            return sample[: -len(suffix)]
    return sample
