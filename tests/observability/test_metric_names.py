"""Every metric is exported under its documented Prometheus name, labelled user_id."""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY, generate_latest

from loomflow.agent import metrics as agent_metrics
from loomflow.audit import metrics as audit_metrics
from loomflow.budget import metrics as budget_metrics
from loomflow.kernel.errors import ServiceError
from loomflow.kernel.ratelimit import TenantLimiter
from loomflow.kernel.security import Refusal, RefusalRecorder
from loomflow.kernel.telemetry import configure_tenant_labels, setup_metrics
from loomflow.memory import metrics as memory_metrics
from loomflow.policy import metrics as policy_metrics
from loomflow.testing.suite import running_suite
from loomflow.v1 import memory_pb2, memory_pb2_grpc, tenancy_pb2
from tests.observability import metric_names
from tests.observability.prometheus import Sample, parse, select

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "k8s" / "dashboards" / "loomflow-grafana.json"
DOCS = REPO / "docs" / "observability.md"


def _record_every_domain_metric(tenant: str) -> None:
    started = time.perf_counter()
    memory_metrics.record_episode_stored(tenant)
    memory_metrics.record_recall(tenant, started)
    memory_metrics.record_eviction("lru", tenant)
    budget_metrics.record_charge(tenant, input_tokens=10, output_tokens=5, cost_usd=0.25)
    budget_metrics.record_reservation(tenant, replayed=False)
    budget_metrics.record_refusal(tenant, "user:total_tokens")
    policy_metrics.record_decision(tenant, "ask")
    policy_metrics.record_approval_opened(tenant)
    policy_metrics.record_approval_resolved(tenant, "approved")
    audit_metrics.record_append(tenant)
    audit_metrics.record_verify_failure(tenant)
    agent_metrics.record_run(tenant, "completed")
    agent_metrics.record_turn(tenant)
    agent_metrics.record_tool_call(tenant, "executed")
    agent_metrics.record_model_call(tenant, "echo", started)
    limiter = TenantLimiter(0.0, 1, 1)  # one call in flight per tenant: the second is refused
    limiter.enter(tenant)
    with contextlib.suppress(ServiceError):
        limiter.enter(tenant)
    limiter.leave(tenant)
    refusal = Refusal("loomflow.v1.MemoryService/Recall", "PERMISSION_DENIED", "test", "-", "", tenant, "peer")
    RefusalRecorder().record("loomflow.v1.MemoryService", refusal)


async def _exported(tmp_path: Path, tenant: str) -> list[Sample]:
    setup_metrics("loomflow", 0)  # in-process: read the registry the exporter feeds, no port needed
    async with running_suite(tmp_path, services="memory") as suite:
        configure_tenant_labels(1000)  # a fresh guard, whatever other tests labelled before
        stub = memory_pb2_grpc.MemoryServiceStub(suite.channel)
        scope = tenancy_pb2.UserScope(user_id=tenant)
        with contextlib.suppress(grpc.aio.AioRpcError):  # any status is counted; only the names matter here
            await stub.Recall(memory_pb2.RecallRequest(scope=scope, query="q"))
        with contextlib.suppress(grpc.aio.AioRpcError):  # NOT_FOUND (or UNIMPLEMENTED): an error either way
            await stub.GetEpisode(memory_pb2.GetEpisodeRequest(scope=scope, episode_id="no-such-episode"))
        _record_every_domain_metric(tenant)
    return parse(generate_latest(REGISTRY).decode())


async def test_every_metric_is_exported_under_its_documented_name_with_user_id(tmp_path: Path) -> None:
    samples = await _exported(tmp_path, "names-tenant")
    for name in sorted(metric_names.sample_names()):
        family = metric_names.family_of(name)
        extra = {**metric_names.COUNTERS, **metric_names.GAUGES, **metric_names.HISTOGRAMS}[family]
        per_tenant = family not in metric_names.HISTOGRAMS
        found = select(samples, name, user_id="names-tenant") if per_tenant else select(samples, name)
        assert found, f"{name} is not exported (for the tenant)? renamed? exporter naming changed?"
        missing = [label for label in extra if label not in found[0].labels]
        assert not missing, f"{name} lacks the labels {missing}"


async def test_user_id_labels_only_counters_and_gauges_never_histograms(tmp_path: Path) -> None:
    samples = await _exported(tmp_path, "labels-tenant")
    histograms = {f"{h}_{part}" for h in metric_names.HISTOGRAMS for part in ("bucket", "count", "sum")}
    loomflow = [s for s in samples if s.name.startswith("loomflow_")]
    # Retention metrics are per service and kind by design (docs/retention-and-operator-views.md);
    # any earlier test in this process that ran a sweeper has exported them.
    per_tenant = [s for s in loomflow if not s.name.startswith("loomflow_retention_")]
    unlabelled = {s.name for s in per_tenant if s.name not in histograms and "user_id" not in s.labels}
    assert not unlabelled, f"counters or gauges without user_id: {sorted(unlabelled)}"
    tenant_histograms = {s.name for s in loomflow if s.name in histograms and "user_id" in s.labels}
    assert not tenant_histograms, (
        f"histograms with a user_id label (a series per bucket per tenant): {tenant_histograms}"
    )


def test_dashboard_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert exprs, "the dashboard has no queries"
    used = {name for expr in exprs for name in re.findall(r"\bloomflow_[a-z_]+", expr)}
    unknown = used - metric_names.sample_names()
    assert not unknown, f"the dashboard queries metrics loomflow does not export: {sorted(unknown)}"
    for needed in ("loomflow_budget_cost_charged_usd_total", "loomflow_rpc_duration_seconds_bucket"):
        assert needed in used, f"the dashboard lost its {needed} panel"
    assert "loomflow_budget_refusals_total" in used


@pytest.mark.parametrize("family", sorted({*metric_names.COUNTERS, *metric_names.GAUGES, *metric_names.HISTOGRAMS}))
def test_the_operations_docs_name_every_metric(family: str) -> None:
    assert family in DOCS.read_text(), f"docs/observability.md does not document {family}"
