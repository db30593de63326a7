"""The real Postgres and Redis that scripts/services.sh starts.

Their DSNs come from LOOMFLOW_TEST_POSTGRES_DSN and LOOMFLOW_TEST_REDIS_URL. A
local run without them skips those tests loudly (the reason names the command);
under CI (CI=true) a missing backend fails instead, so it can never be skipped
silently there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

START_HINT = 'start them with: eval "$(scripts/services.sh start)"'


def require_env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if value:
        return value
    message = f"{what} not available: {name} is unset; {START_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def postgres_dsn() -> str:
    return require_env("LOOMFLOW_TEST_POSTGRES_DSN", "Postgres")


def redis_url() -> str:
    return require_env("LOOMFLOW_TEST_REDIS_URL", "Redis")


@contextlib.asynccontextmanager
async def postgres_schema(name: str) -> AsyncIterator[str]:
    """The shared Postgres, with this test's tables in a schema of their own (dropped afterwards):
    the audit log records which keys wrote it, so tests with other keys must not share its tables."""
    base = postgres_dsn()
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f"CREATE SCHEMA {name}")
    finally:
        await conn.close()
    parts = urlsplit(base)
    query = "&".join(filter(None, [parts.query, f"search_path={name}"]))
    try:
        yield urlunsplit(parts._replace(query=query))
    finally:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f"DROP SCHEMA {name} CASCADE")
        finally:
            await conn.close()
