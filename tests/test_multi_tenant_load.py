"""Smoke variant of bench/multi_tenant.py: 20 users × 3 turns through one shared Agent, in both
topologies, with the same four assertions (latency bounds, linear RSS, isolation, budget)."""

from __future__ import annotations

import pytest

from bench.multi_tenant import Bounds, measure
from bench.topology import TOPOLOGIES

# Generous bounds: this runs on a shared 2-core CI machine, and 20 tenants are too few for a
# meaningful straight-line fit of RSS (allocator noise dominates); the benchmark proper checks it.
SMOKE_BOUNDS = Bounds(max_p50_ms=500.0, max_p99_ms=3000.0, max_kb_per_tenant=512.0, min_linear_r2=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_multi_tenant_smoke_holds_isolation_budget_latency_and_memory(topology: str) -> None:
    run = measure(topology, users=20, turns=3, concurrency=8, phases=2, bounds=SMOKE_BOUNDS, show_progress=False)
    assert run["errors"] == 0, run["failures"]
    assert run["isolation_violations"] == 0, run["failures"]
    assert run["budget_mismatches"] == 0, run["failures"]
    assert run["latency"]["count"] == 20 * 3, "every turn must have completed"
    assert run["failures"] == [], run["failures"]
