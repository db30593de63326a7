"""Budget's domain metrics, exported on the Prometheus endpoint (docs/observability.md).

Prometheus names: ``loomflow_budget_tokens_charged_total{kind}`` (kind: input,
output), ``loomflow_budget_cost_charged_usd_total``,
``loomflow_budget_reservations_total{outcome}`` (granted, replayed) and
``loomflow_budget_refusals_total{limit}`` (the limit a refused reservation
would have exceeded), ``loomflow_budget_overruns_total{dimension}`` (commits that
charged more than their reservation held) and
``loomflow_budget_overrun_amount_total{dimension}`` (by how much). Every point is
labelled ``user_id`` through the kernel's cardinality guard.
"""

from __future__ import annotations

from loomflow.kernel.telemetry import meter, tenant_label

_meter = meter("loomflow.budget")
_tokens_charged = _meter.create_counter(
    "loomflow_budget_tokens_charged", unit="{token}", description="Tokens committed to a tenant's budget"
)
_cost_charged = _meter.create_counter(
    "loomflow_budget_cost_charged_usd", unit="{USD}", description="Cost committed to a tenant's budget, in US dollars"
)
_reservations = _meter.create_counter(
    "loomflow_budget_reservations", unit="{reservation}", description="Reservations granted, by outcome"
)
_overruns = _meter.create_counter(
    "loomflow_budget_overruns", unit="{commit}", description="Commits that charged more than their reservation held"
)
_overrun_amount = _meter.create_counter(
    "loomflow_budget_overrun_amount", description="How far commits went above their reservation, in each unit"
)
_refusals = _meter.create_counter(
    "loomflow_budget_refusals", unit="{reservation}", description="Reservations refused, by the limit they would exceed"
)


def record_charge(tenant_key: str, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
    """What one commit settled on the tenant's budget."""
    user_id = tenant_label(tenant_key)
    if input_tokens:
        _tokens_charged.add(input_tokens, {"user_id": user_id, "kind": "input"})
    if output_tokens:
        _tokens_charged.add(output_tokens, {"user_id": user_id, "kind": "output"})
    if cost_usd:
        _cost_charged.add(cost_usd, {"user_id": user_id})


def record_reservation(tenant_key: str, replayed: bool) -> None:
    """A granted reservation; ``replayed``: an idempotent retry answered from the ledger."""
    _reservations.add(1, {"user_id": tenant_label(tenant_key), "outcome": "replayed" if replayed else "granted"})


def record_refusal(tenant_key: str, limit: str) -> None:
    """``limit``: the limit's name as RESOURCE_EXHAUSTED names it (a fixed set, e.g. ``user:total_tokens/daily``)."""
    _refusals.add(1, {"user_id": tenant_label(tenant_key), "limit": limit})


def record_overrun(tenant_key: str, dimension: str, excess: int) -> None:
    """A commit charged ``excess`` more of ``dimension`` (e.g. ``total_tokens``) than its reservation held."""
    attributes = {"user_id": tenant_label(tenant_key), "dimension": dimension}
    _overruns.add(1, attributes)
    _overrun_amount.add(excess, attributes)
