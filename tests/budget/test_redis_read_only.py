"""A Redis that can no longer take writes (a replica after a failover) fails closed too.

Starts a private redis-server of its own as a replica of a master that does not
exist, so every write is refused with READONLY; the shared Redis is not touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from loomflow.budget.core import Budget
from loomflow.budget.ledger import open_ledger
from loomflow.budget.models import Usage
from loomflow.budget.pricing import PriceTable
from loomflow.kernel.errors import Unavailable
from loomflow.testing.processes import free_port

pytestmark = pytest.mark.redis


@pytest.fixture
def read_only_redis(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (scripts/services.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    server = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--replicaof",
            "127.0.0.1",
            "1",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        subprocess.run(
            [
                "bash",
                "-c",
                f"for _ in $(seq 50); do redis-cli -p {port} ping >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1",
            ],
            check=True,
        )
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_reserve_on_a_read_only_replica_is_unavailable_not_granted(read_only_redis: str) -> None:
    budget = Budget(open_ledger(read_only_redis), PriceTable.load())
    try:
        with pytest.raises(Unavailable, match="read only"):
            await budget.reserve("alice", "c1", "echo", Usage(input_tokens=1))
    finally:
        await budget.close()
