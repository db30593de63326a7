"""A graceful stop ends open WatchApprovals streams at once instead of holding the drain open."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc

from loomflow.testing.suite import running_suite
from loomflow.v1 import policy_pb2, policy_pb2_grpc, tenancy_pb2


async def test_open_watch_streams_end_cleanly_when_the_server_drains(tmp_path: Path) -> None:
    async with running_suite(tmp_path, services="policy", overrides={"": {"shutdown_grace": 20.0}}) as suite:
        stub = policy_pb2_grpc.PolicyServiceStub(suite.channel)
        watch = stub.WatchApprovals(
            policy_pb2.WatchApprovalsRequest(scope=tenancy_pb2.UserScope(user_id="alice")), timeout=60
        )
        await asyncio.sleep(0.3)  # the stream is open and waiting
        started = time.monotonic()
        await suite.server.stop()  # the suite's own grace (20 s) would apply if the stream held on
        drained_in = time.monotonic() - started
        received = [item async for item in watch]
        assert await watch.code() == grpc.StatusCode.OK, "the watcher sees a clean end, not an error"
        assert received == []
        assert drained_in < 5, f"the drain waited {drained_in:.1f}s for an idle watch stream"
