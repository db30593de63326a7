"""Fixtures every suite shares. Backends are real: see tests/support/backends.py."""

from __future__ import annotations

import loomflow.kernel.grpc_runtime  # noqa: F401  # before grpc: the suite runs on the runtime settings it ships

# isort: split
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loomflow.kernel.transport import inprocess
from loomflow.testing.suite import RunningSuite, running_suite
from tests.support import backends

inprocess.CHECK_REQUESTS = True  # every in-process call of every test proves its handler left the request alone


@pytest.fixture
async def suite(tmp_path: Path) -> AsyncIterator[RunningSuite]:
    """All five services in one process on a free port, insecure (operator) mode."""
    async with running_suite(tmp_path) as running:
        yield running


@pytest.fixture
def postgres_dsn() -> str:
    return backends.postgres_dsn()


@pytest.fixture
def redis_url() -> str:
    return backends.redis_url()


@pytest.fixture
def unique() -> str:
    """A fresh suffix so tests sharing a real database never see each other's rows."""
    return uuid.uuid4().hex[:12]
