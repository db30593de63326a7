"""Apply a backend's migrations at start, or (``LOOMFLOW_MIGRATE=false``) only check they were applied.

With migrations off the app needs no DDL rights: ``loomflow migrate`` (a Kubernetes Job) applies them as
the schema owner, and every backend refuses to start on a schema older than the release expects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from loomflow.kernel.config import ConfigError

RUN_MIGRATE = "run `loomflow migrate`"


class SchemaBehind(ConfigError):
    """The database schema is older than this release and this process may not migrate it."""


async def applied_version(conn: Any, table: str) -> int:
    """The highest ``version`` recorded in a backend's migrations table; 0 when the table does not exist."""
    if await conn.fetchval("SELECT to_regclass($1)", table) is None:
        return 0
    return int(await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {table}"))


async def migrate_or_check(
    conn: Any, component: str, *, apply: bool, migrate: Callable[[Any], Awaitable[Any]], table: str, latest: int
) -> None:
    """Runs ``migrate(conn)`` when ``apply``; otherwise refuses a schema whose ``table`` is behind ``latest``."""
    if apply:
        await migrate(conn)
        return
    have = await applied_version(conn, table)
    if have < latest:
        raise SchemaBehind(
            f"{component} schema is at version {have}, this release needs {latest} "
            f"and LOOMFLOW_MIGRATE=false: {RUN_MIGRATE}"
        )


async def check_objects(conn: Any, component: str, names: Iterable[str]) -> None:
    """For schemas without a version table: refuses to start when a table or index is missing."""
    missing = [name for name in names if await conn.fetchval("SELECT to_regclass($1)", name) is None]
    if missing:
        raise SchemaBehind(f"{component} schema lacks {', '.join(missing)} and LOOMFLOW_MIGRATE=false: {RUN_MIGRATE}")
