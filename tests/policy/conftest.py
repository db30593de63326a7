"""Policy fixtures: a store on every backend (isolated per test), and a clock tests control.

SQLite isolation: a file under the test's tmp_path. Postgres isolation: a unique
schema per test (the DSN's ``search_path``), dropped afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loomflow.policy.store import PolicyStore, open_store
from tests.support import backends
from tests.support.clock import FakeClock

START_MS = 1_780_000_000_000


@dataclass
class Backend:
    name: str
    dsn: str
    data_dir: Path

    def open(self) -> PolicyStore:
        return open_store(self.dsn, self.data_dir)


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@contextlib.asynccontextmanager
async def postgres_schema(unique: str, data_dir: Path) -> AsyncIterator[Backend]:
    """The real Postgres, in a schema of its own that is dropped afterwards."""
    async with backends.postgres_schema(f"policy_test_{unique}") as dsn:
        yield Backend("postgres", dsn, data_dir)


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, unique: str, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite://{tmp_path}/policy.db", tmp_path)
        return
    async with postgres_schema(unique, tmp_path) as backend:
        yield backend


@pytest.fixture
async def postgres_backend(unique: str, tmp_path: Path) -> AsyncIterator[Backend]:
    async with postgres_schema(unique, tmp_path) as backend:
        yield backend


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[PolicyStore]:
    opened = backend.open()
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START_MS)
