"""Retention as deployed: the sweepers start with their services, honour the per-tenant file,
export their metrics, and a malformed setting or file stops the server before it binds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY, generate_latest

from loomflow.kernel.config import ConfigError
from loomflow.suite import build_server
from loomflow.testing.suite import running_suite
from loomflow.v1 import memory_pb2, memory_pb2_grpc, tenancy_pb2

TINY_DAYS = 0.2 / 86_400  # 0.2 s: long enough to read the episode back, short enough to watch it go


def scope(user_id: str) -> tenancy_pb2.UserScope:
    return tenancy_pb2.UserScope(user_id=user_id)


async def episode_status(
    stub: memory_pb2_grpc.MemoryServiceAsyncStub, user_id: str, episode_id: str
) -> grpc.StatusCode:
    try:
        await stub.GetEpisode(memory_pb2.GetEpisodeRequest(scope=scope(user_id), episode_id=episode_id))
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def wait_until_swept(stub: memory_pb2_grpc.MemoryServiceAsyncStub, user_id: str, episode_id: str) -> None:
    for _ in range(200):  # 10 s at most; the sweep runs every 0.05 s
        if await episode_status(stub, user_id, episode_id) is grpc.StatusCode.NOT_FOUND:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"{user_id}'s episode outlived its retention")


def swept_rows(kind: str, service: str = "memory") -> float:
    needle = f'loomflow_retention_swept_rows_total{{kind="{kind}",service="{service}"}}'
    lines = [line for line in generate_latest(REGISTRY).decode().splitlines() if line.startswith(needle)]
    return float(lines[0].split()[-1]) if lines else 0.0


async def test_the_memory_sweeper_deletes_past_retention_and_keeps_an_overridden_tenant(tmp_path: Path) -> None:
    overrides_file = tmp_path / "retention.yaml"
    overrides_file.write_text("tenants:\n  keeper: {memory_episodes_days: 0}\n")
    overrides: dict[str, dict[str, Any]] = {
        "retention": {"memory_episodes_days": TINY_DAYS, "sweep_seconds": 0.05, "file": str(overrides_file)}
    }
    before = swept_rows("memory_episodes")
    async with running_suite(tmp_path, services="memory", overrides=overrides) as served:
        stub = memory_pb2_grpc.MemoryServiceStub(served.channel)
        ids = {}
        for user_id in ("keeper", "other"):
            request = memory_pb2.RememberRequest(scope=scope(user_id), session_id="s", input="hello", output="hi")
            ids[user_id] = (await stub.Remember(request)).episode.id
        await wait_until_swept(stub, "other", ids["other"])
        kept = await episode_status(stub, "keeper", ids["keeper"])
        assert kept is grpc.StatusCode.OK, "the tenant's keep-forever override was ignored"
    assert swept_rows("memory_episodes") >= before + 1, "the sweep was not counted in the metrics"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("tenants:\n  bob: {memory_episode_days: 3}\n", "unknown setting"),
        ("tenants:\n  bob: {memory_episodes_days: -1}\n", "days ≥ 0"),
        ("retention: 3\n", "expected one key"),
    ],
)
def test_a_malformed_overrides_file_stops_the_server_before_it_binds(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "retention.yaml"
    path.write_text(text)
    overrides: dict[str, dict[str, Any]] = {
        "": {"services": "memory,policy", "data_dir": str(tmp_path), "insecure": True, "tracing": False},
        "retention": {"file": str(path)},
    }
    with pytest.raises(ConfigError, match=complaint):
        build_server(env={}, overrides=overrides)


def last_sweep_seconds(service: str) -> float:
    needle = f'loomflow_retention_last_sweep_timestamp_seconds{{service="{service}"}}'
    lines = [line for line in generate_latest(REGISTRY).decode().splitlines() if line.startswith(needle)]
    return float(lines[0].split()[-1]) if lines else 0.0


async def test_the_audit_service_runs_its_payload_sweeper_when_a_retention_is_set(tmp_path: Path) -> None:
    # Shredding itself is proven with a controllable clock in tests/audit/test_payload_retention.py
    # (a payload goes with its whole UTC day); this proves the deployed service sweeps at all.
    overrides: dict[str, dict[str, Any]] = {"retention": {"audit_payloads_days": 1, "sweep_seconds": 0.05}}
    before = last_sweep_seconds("audit")
    async with running_suite(tmp_path, services="audit", overrides=overrides):
        for _ in range(200):  # 10 s at most
            if last_sweep_seconds("audit") > before:
                return
            await asyncio.sleep(0.05)
    pytest.fail("the audit service ran no retention sweep")
