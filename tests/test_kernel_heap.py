"""A serving process freezes its startup heap and raises the collector's thresholds; it undoes both on exit."""

from __future__ import annotations

import asyncio
import gc
import os
import signal

from loomflow.kernel import heap
from loomflow.kernel.auth import AuthSettings
from loomflow.kernel.server import Server
from loomflow.kernel.settings import ServerSettings


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


async def test_serving_settles_the_heap_and_exit_restores_the_collector() -> None:
    before = gc.get_threshold()
    server = Server(ServerSettings(port=0, metrics_port=0, insecure=True, shutdown_grace=1.0), AuthSettings(), [])
    serving = asyncio.create_task(server.run_until_signal())
    async with asyncio.timeout(10):
        while server.port == 0:  # noqa: ASYNC110 - the server exposes no readiness event; poll briefly
            await asyncio.sleep(0.01)
    await asyncio.sleep(0)  # run_until_signal settles the heap right after start()
    assert gc.get_threshold() == heap.THRESHOLDS
    assert gc.get_freeze_count() > 0

    # Cycles made while serving are still collected.
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    del first, second
    assert gc.collect() >= 2

    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(serving, timeout=10)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
