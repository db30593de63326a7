"""Opening Postgres (asyncpg): pools and single connections, outages raised as ``Unavailable``.

A DSN's ``?search_path=<schema>`` keeps a deployment's tables in a schema of its own: asyncpg sends
unknown query options as session settings, so every pooled connection (and the migration runner, which
works in ``current_schema()``) sees only that schema.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import asyncpg

from loomflow.kernel.backends.dsn import redact
from loomflow.kernel.backends.errors import unavailable_on_outage
from loomflow.kernel.config import ConfigError


@contextlib.contextmanager
def _refused_login(what: str) -> Iterator[None]:
    """A server that answers but refuses us (wrong password, no such database or role) is a configuration
    error, not an outage: the service does not start, naming the backend (the password redacted)."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        raise ConfigError(
            f"{what}: the server refused the connection: {type(exc).__name__}: {redact(str(exc))}"
        ) from exc


async def open_pool(
    dsn: str,
    what: str,
    *,
    max_size: int,
    min_size: int = 1,
    connect_timeout: float = 5.0,
    command_timeout: float | None = None,
    server_settings: Mapping[str, str] | None = None,
) -> asyncpg.Pool:
    """A pool of up to ``max_size`` connections: ``Unavailable`` naming ``what`` when Postgres cannot be reached,
    ``ConfigError`` when it refuses the login."""
    with _refused_login(what), unavailable_on_outage(what):
        pool: asyncpg.Pool = await asyncpg.create_pool(
            dsn,
            min_size=min(min_size, max_size),
            max_size=max_size,
            timeout=connect_timeout,
            command_timeout=command_timeout,
            server_settings=dict(server_settings) if server_settings else None,
        )
        return pool


async def connect(dsn: str, what: str, *, connect_timeout: float = 5.0) -> asyncpg.Connection:
    """One dedicated connection (e.g. for LISTEN), outside any pool."""
    with _refused_login(what), unavailable_on_outage(what):
        conn: asyncpg.Connection = await asyncpg.connect(dsn, timeout=connect_timeout)
        return conn


async def current_schema(conn: asyncpg.Connection) -> str:
    return str(await conn.fetchval("SELECT current_schema()"))
