"""The Agent uses a dependency again within about a second of it coming back.

gRPC's default reconnect backoff starts at 1 s and grows by 1.6× up to 120 s: after
a few seconds of outage the Agent's channel would wait seconds more before trying
the restarted service, failing every run meanwhile (bench/faults.py measured more
than 5 s after a Memory restart). The Agent's channels cap the backoff at 1 s.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from loomflow.agent.dependencies import Addresses, Dependencies, ServiceCredential
from loomflow.kernel.auth import AuthSettings
from loomflow.testing.processes import free_port
from loomflow.testing.suite import running_suite
from loomflow.v1 import memory_pb2, tenancy_pb2

OUTAGE_S = 5.5  # default backoff would next try at about 9 s: 1 + 1.6 + 2.6 + 4.1


@pytest.mark.slow
async def test_a_dependency_back_after_an_outage_is_used_again_within_about_a_second(tmp_path: Path) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    deps = Dependencies(Addresses(address, address, address, address), ServiceCredential(AuthSettings(), True), 1.0)
    recall = memory_pb2.RecallRequest(scope=tenancy_pb2.UserScope(user_id="alice"), query="anything")
    try:
        down_until = time.monotonic() + OUTAGE_S
        while time.monotonic() < down_until:  # runs keep failing (and backing the channel off) meanwhile
            with pytest.raises(grpc.aio.AioRpcError):
                await deps.memory.Recall(recall, timeout=0.5)
            await asyncio.sleep(0.2)
        async with running_suite(tmp_path, services="memory", overrides={"": {"port": port}}):
            back = time.monotonic()
            while True:
                try:
                    await deps.memory.Recall(recall, timeout=0.5)
                    break
                except grpc.aio.AioRpcError:
                    assert time.monotonic() - back < 5, "the channel never reconnected"
                    await asyncio.sleep(0.05)
            waited = time.monotonic() - back
            assert waited < 2.0, f"reconnected {waited:.1f} s after the service was back"
    finally:
        await deps.close()
