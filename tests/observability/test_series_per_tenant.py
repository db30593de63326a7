"""What one active tenant costs the metrics backend: series with its user_id label, per process."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

from loomflow.kernel.telemetry import setup_metrics
from loomflow.testing.suite import running_suite
from loomflow.v1 import agent_pb2, agent_pb2_grpc, tenancy_pb2
from tests.observability.prometheus import parse

TENANTS = 8
MAX_SERIES_PER_TENANT = 15


async def test_an_active_tenant_costs_at_most_fifteen_series_even_with_every_service_in_one_process(
    tmp_path: Path,
) -> None:
    setup_metrics("loomflow", 0)  # in-process: read the registry the endpoint serves, no port needed
    overrides = {"": {"metrics_max_tenants": 1000}}
    async with running_suite(tmp_path, overrides=overrides) as suite:  # all five services: the worst case
        stub = agent_pb2_grpc.AgentServiceStub(suite.channel)
        for i in range(TENANTS):
            for turn in range(2):  # a second turn recalls the first: the same series, not new ones
                options = agent_pb2.RunOptions(prompt=f"hello {turn}", session_id="s")
                await stub.Run(
                    agent_pb2.RunRequest(scope=tenancy_pb2.UserScope(user_id=f"series-{i}"), options=options),
                    timeout=20,
                )
        samples = parse(generate_latest(REGISTRY).decode())
    per_tenant = {
        f"series-{i}": sorted(
            f"{s.name}{sorted(s.labels.items())}" for s in samples if s.labels.get("user_id") == f"series-{i}"
        )
        for i in range(TENANTS)
    }
    counts = {tenant: len(series) for tenant, series in per_tenant.items()}
    assert min(counts.values()) > 0, f"tenants without series: {counts}"
    worst = max(per_tenant.values(), key=len)
    assert len(worst) <= MAX_SERIES_PER_TENANT, f"{len(worst)} series for one tenant:\n" + "\n".join(worst)
