"""Runs a real loomflow server on a free loopback port, in this process: the fastest way to test against the suite."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from loomflow import suite
from loomflow.kernel.server import Server

TEST_JWT_SECRET = "loomflow-test-hs256-7f3a9c1e5b8d2046af91c3e7d5b20864"


@dataclass
class RunningSuite:
    server: Server
    address: str
    channel: grpc.aio.Channel


@contextlib.asynccontextmanager
async def running_suite(
    data_dir: Path,
    services: str = "memory,budget,policy,audit,agent",
    *,
    insecure: bool = True,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> AsyncIterator[RunningSuite]:
    """Starts the given services on 127.0.0.1:0 with embedded state under ``data_dir``."""
    merged: dict[str, dict[str, Any]] = {
        "": {
            "host": "127.0.0.1",
            "port": 0,
            "metrics_port": 0,
            "services": services,
            "data_dir": str(data_dir),
            "insecure": insecure,
            "shutdown_grace": 2.0,
            "tracing": False,
        },
        "auth": {"jwt_secret": TEST_JWT_SECRET},
    }
    for section, values in (overrides or {}).items():
        merged.setdefault(section, {}).update(values)
    server = suite.build_server(env={}, overrides=merged)
    port = await server.start()
    address = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(address)
    try:
        yield RunningSuite(server, address, channel)
    finally:
        await channel.close()
        await server.stop(0.5)
