"""Graceful shutdown: SIGTERM flips health to NOT_SERVING and drains in-flight calls."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loomflow.kernel.auth import AuthSettings
from loomflow.kernel.hosting import HostedService
from loomflow.kernel.server import Server
from loomflow.kernel.settings import ServerSettings
from loomflow.v1 import memory_pb2, memory_pb2_grpc, tenancy_pb2

REPO = Path(__file__).resolve().parents[1]


class SlowMemory(memory_pb2_grpc.MemoryServiceServicer):
    """Recall takes a while, so a call is in flight when SIGTERM arrives."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def Recall(self, request: Any, context: Any) -> memory_pb2.RecallResponse:
        self.started.set()
        await asyncio.sleep(1.0)
        return memory_pb2.RecallResponse()


async def test_sigterm_drains_in_flight_calls_before_exit() -> None:
    servicer = SlowMemory()  # type: ignore[abstract]  # only Recall is served
    hosted = HostedService(
        name="memory",
        full_name="loomflow.v1.MemoryService",
        register=lambda server: memory_pb2_grpc.add_MemoryServiceServicer_to_server(servicer, server),
    )
    settings = ServerSettings(
        port=0, metrics_port=0, insecure=True, shutdown_grace=5.0, shutdown_delay=0.5, tracing=False
    )
    server = Server(settings, AuthSettings(), [hosted])
    serving = asyncio.create_task(server.run_until_signal())
    async with asyncio.timeout(10):
        while server.port == 0:  # noqa: ASYNC110 - the server exposes no readiness event; poll briefly
            await asyncio.sleep(0.01)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    stub = memory_pb2_grpc.MemoryServiceStub(channel)
    request = memory_pb2.RecallRequest(scope=tenancy_pb2.UserScope(user_id="alice"), query="q")
    in_flight = asyncio.ensure_future(stub.Recall(request, timeout=10))
    await servicer.started.wait()

    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.2)
    health = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="loomflow.v1.MemoryService"), timeout=2
    )
    assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING, "health must flip before the drain ends"

    reply = await in_flight  # completes normally: the drain waited for it
    assert isinstance(reply, memory_pb2.RecallResponse)
    await asyncio.wait_for(serving, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Recall(request, timeout=2)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, "a drained server accepts no new calls"
    await channel.close()


@pytest.mark.slow
def test_loomflow_serve_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'services'}:{REPO / 'clients/python'}",
        "LOOMFLOW_PORT": str(port),
        "LOOMFLOW_METRICS_PORT": "0",
        "LOOMFLOW_DATA_DIR": str(tmp_path),
        "LOOMFLOW_INSECURE": "true",
    }
    proc = subprocess.Popen([sys.executable, "-m", "loomflow.cli", "serve"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("loomflow serve did not start listening")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert '"msg": "draining"' in stderr, stderr
    assert '"msg": "stopped"' in stderr, stderr
