"""Memory fixtures: every backend behind one ``store`` fixture, so one suite tests them all.

Postgres and Redis are the real servers of scripts/services.sh, shared by every
test: tests isolate themselves with unique tenant ids (the ``tenant`` fixture).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from loomflow.memory.store import MemoryStore, open_store
from loomflow.testing import databases
from tests.support import backends

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("chroma", id="chroma"),
]
SHARED_BACKENDS = [p for p in BACKENDS if p.id not in ("memory", "chroma")]
"""Backends a second process can share (Chroma's embedded client is single-process)."""


def dsn_for(backend: str, tmp_path: Path) -> str:
    """The shared server itself: memory tests isolate by tenant id (the ``tenant`` fixture)."""
    backends.require(backend)
    return databases.shared_dsn(backend, tmp_path, "memory" if backend == "sqlite" else "chroma")


StoreFactory = Callable[[], MemoryStore]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(backend: str, tmp_path: Path) -> AsyncIterator[MemoryStore]:
    opened = open_store(dsn_for(backend, tmp_path), tmp_path)
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def tenant(unique: str) -> Callable[[str], str]:
    """Tenant ids unique to this test: ``tenant("alice")`` → ``alice-<hex>``."""
    return lambda name: f"{name}-{unique}"
