"""Per-call balancing: the Agent's channel spreads calls over every replica it resolves."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from loomflow.agent.dependencies import Addresses, Dependencies, ServiceCredential
from loomflow.kernel.auth import AuthSettings
from loomflow.testing.processes import ServeProcess, free_port
from loomflow.v1 import memory_pb2, tenancy_pb2

REPLICAS = 3
CALLS = 90


def served_recalls(metrics_port: int) -> float:
    """Recall calls one Memory process served, read from its own /metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    pattern = r'^loomflow_rpc_duration_seconds_count\{[^}]*method="Recall"[^}]*\} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


async def test_each_of_three_memory_replicas_gets_a_fair_share_of_the_agents_calls(tmp_path: Path) -> None:
    metrics_ports = [free_port() for _ in range(REPLICAS)]
    replicas = [
        ServeProcess(
            "memory",
            tmp_path / f"memory-{i}",
            env={"LOOMFLOW_INSECURE": "true", "LOOMFLOW_TRACING": "false", "LOOMFLOW_METRICS_PORT": str(port)},
        )
        for i, port in enumerate(metrics_ports)
    ]
    try:
        for replica in replicas:
            replica.start()
        # What a `dns:///memory-headless:50051` target resolves to in a cluster: every replica's address.
        target = "ipv4:" + ",".join(r.address for r in replicas)
        deps = Dependencies(Addresses(target, target, target, target), ServiceCredential(AuthSettings(), True), 5.0)
        request = memory_pb2.RecallRequest(scope=tenancy_pb2.UserScope(user_id="alice"), query="hi")
        try:
            for _ in range(CALLS):
                await deps.memory.Recall(request, metadata=deps.metadata, timeout=5)
        finally:
            await deps.close()
        shares = [served_recalls(port) / CALLS for port in metrics_ports]
        assert sum(shares) == 1.0, f"the replicas counted {shares} of the calls, not all of them"
        assert min(shares) >= 0.20, f"one replica got under 20 % of the calls: shares {shares}"
    finally:
        for replica in replicas:
            replica.stop()
