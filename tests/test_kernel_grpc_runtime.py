"""`loomflow serve` runs gRPC on iomgr TCP endpoints unless the operator set GRPC_EXPERIMENTS."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from loomflow.kernel.grpc_runtime import IOMGR_ENDPOINTS
from loomflow.testing.processes import source_env

# Imports the CLI the way `loomflow serve` does, then serves and makes one call with gRPC's TCP
# tracer on: iomgr's endpoints log from tcp_posix.cc, the EventEngine's from endpoint.cc.
_PROBE = """
import asyncio, os, sys
import loomflow.cli
import grpc

async def main() -> None:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            await channel.unary_unary("/probe.Probe/Nothing")(b"", timeout=5)
        except grpc.aio.AioRpcError:
            pass  # UNIMPLEMENTED: the bytes crossed the endpoints, which is all the probe needs
    await server.stop(0)

asyncio.run(main())
print("GRPC_EXPERIMENTS=" + os.environ["GRPC_EXPERIMENTS"])
"""


def _probe(experiments: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in source_env().items() if k != "GRPC_EXPERIMENTS"}
    env |= {"GRPC_TRACE": "tcp", "GRPC_VERBOSITY": "debug"}
    if experiments is not None:
        env["GRPC_EXPERIMENTS"] = experiments
    return subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60, check=True
    )


def test_the_cli_selects_iomgr_endpoints_before_grpc_loads() -> None:
    probe = _probe(None)
    assert f"GRPC_EXPERIMENTS={IOMGR_ENDPOINTS}" in probe.stdout
    assert "tcp_posix.cc" in probe.stderr  # the setting took effect: gRPC read it at import
    assert "endpoint.cc" not in probe.stderr


@pytest.mark.parametrize("chosen", ["", "-event_engine_listener"])
def test_an_operators_grpc_experiments_wins(chosen: str) -> None:
    probe = _probe(chosen)
    assert f"GRPC_EXPERIMENTS={chosen}\n" in probe.stdout


def test_grpc_defaults_come_back_when_the_operator_clears_the_setting() -> None:
    assert "endpoint.cc" in _probe("").stderr  # the EventEngine's endpoints, gRPC's own default


def test_this_test_process_runs_on_the_shipped_setting() -> None:
    assert os.environ.get("GRPC_EXPERIMENTS") == IOMGR_ENDPOINTS  # tests/conftest.py imports the module first
