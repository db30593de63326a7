"""Audit's domain metrics, exported on the Prometheus endpoint (docs/observability.md).

Prometheus names: ``loomflow_audit_appends_total`` and
``loomflow_audit_verify_failures_total`` (verifications that found a tenant's
chain broken). Every point is labelled ``user_id`` through the kernel's
cardinality guard.
"""

from __future__ import annotations

from loomflow.kernel.telemetry import meter, tenant_label

_meter = meter("loomflow.audit")
_appends = _meter.create_counter("loomflow_audit_appends", unit="{entry}", description="Audit entries appended")
_verify_failures = _meter.create_counter(
    "loomflow_audit_verify_failures", unit="{verification}", description="Chain verifications that failed"
)


def record_append(tenant_key: str, count: int = 1) -> None:
    _appends.add(count, {"user_id": tenant_label(tenant_key)})


def record_verify_failure(tenant_key: str) -> None:
    _verify_failures.add(1, {"user_id": tenant_label(tenant_key)})
