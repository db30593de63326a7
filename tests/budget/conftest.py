"""Budget fixtures: one isolated ledger per test on every backend, and a clock tests control.

Redis isolation: a unique key prefix per test. Postgres isolation: a unique schema
per test (the DSN's ``search_path``), dropped afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from loomflow.budget.core import Budget
from loomflow.budget.ledger import LedgerOptions, open_ledger
from loomflow.budget.pricing import PriceTable
from loomflow.budget.windows import Calendar
from tests.support import backends
from tests.support.clock import FakeClock

# 2026-03-31 23:59:00 UTC: one minute before a day *and* a month end.
START_MS = int(datetime(2026, 3, 31, 23, 59, tzinfo=UTC).timestamp() * 1000)


@dataclass
class Backend:
    name: str
    dsn: str

    def through(self, port: int) -> Backend:
        """The same store reached on another loopback port (a proxy, or nothing at all)."""
        parts = urlsplit(self.dsn)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{port}"
        return Backend(
            self.name, urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))
        )

    def open(self, clock: FakeClock, prices: PriceTable | None = None, **options: Any) -> Budget:
        ledger_options = LedgerOptions(**{k: v for k, v in options.items() if k in LedgerOptions.__annotations__})
        budget_options = {k: v for k, v in options.items() if k not in LedgerOptions.__annotations__}
        return Budget(
            open_ledger(self.dsn, ledger_options),
            prices or PriceTable.load(),
            Calendar(clock),
            **budget_options,
        )


BACKENDS = [
    pytest.param("inprocess", id="inprocess"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
DURABLE_BACKENDS = BACKENDS[1:]


@contextlib.asynccontextmanager
async def isolated(name: str, unique: str) -> AsyncIterator[Backend]:
    """A backend of its own for one test: a fresh key prefix (Redis) or schema (Postgres)."""
    if name == "inprocess":
        yield Backend(name, "")
        return
    async with backends.isolated(name, Path(), f"budget_test_{unique}") as dsn:
        yield Backend(name, dsn)


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[Backend]:
    async with isolated(request.param, unique) as found:
        yield found


@pytest.fixture(params=DURABLE_BACKENDS)
async def durable_backend(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[Backend]:
    """Only the backends with a store of their own (restarts, outages)."""
    async with isolated(request.param, unique) as found:
        yield found


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START_MS)


@pytest.fixture
async def budget(backend: Backend, clock: FakeClock) -> AsyncIterator[Budget]:
    opened = backend.open(clock)
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()
