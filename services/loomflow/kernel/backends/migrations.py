"""The one Postgres migration runner: versioned migrations, one bookkeeping table, one lock.

Every backend describes its schema as a :class:`Schema`: a component name (the service's own) and
its migrations, numbered from 1. :func:`migrate` applies the ones not yet recorded, in one transaction
holding a transaction-scoped advisory lock, so any number of replicas (or ``loomflow migrate`` Jobs) may
start at once: the first applies, the others wait for its commit and then find nothing to do.

Bookkeeping: one table, ``loomflow_schema_migrations (component, version, applied_at, adopted)``, in the
connection's ``current_schema()`` (so ``?search_path=`` keeps deployments apart). Releases before it kept
one table per service, each named its own way (each store names its old table, or the objects an
unversioned schema had): the first run on such a database *adopts* the old
table's version (records it, ``adopted = true``, without re-running anything) and carries on from there.

With ``LOOMFLOW_MIGRATE=false`` a process needs no DDL rights: :func:`check` only reads the version
(from either table) and refuses to start on a schema older than this release (``run loomflow migrate``).

``loomflow migrate`` knows no service: each service module declares a :class:`Declared` (the setting
naming its database, and how its backend brings that database current) as ``MIGRATIONS``, and the
command runs :func:`apply_declared` for every configured service that declares one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loomflow.kernel.backends import dsn as dsns
from loomflow.kernel.config import ConfigError

if TYPE_CHECKING:  # the postgres extra: a service module declares its migrations without importing asyncpg
    import asyncpg

TABLE = "loomflow_schema_migrations"
LOCK = "SELECT pg_advisory_xact_lock(hashtext('loomflow.schema_migrations'))"
RUN_MIGRATE = "run `loomflow migrate`"

LegacyVersion = Callable[["asyncpg.Connection"], Awaitable[int]]


class SchemaBehind(ConfigError):
    """The database schema is older than this release and this process may not migrate it."""


@dataclass(frozen=True)
class Migration:
    version: int
    statements: tuple[str, ...]


@dataclass(frozen=True)
class Schema:
    """One component's migrations; ``legacy`` reads the version an older release recorded its own way."""

    component: str
    migrations: tuple[Migration, ...]
    legacy: LegacyVersion | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        numbers = [m.version for m in self.migrations]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"{self.component}: migrations must be numbered 1, 2, 3…, not {numbers}")

    @property
    def latest(self) -> int:
        return len(self.migrations)


def numbered(component: str, steps: Sequence[Sequence[str] | str], legacy: LegacyVersion | None = None) -> Schema:
    """A :class:`Schema` from its steps in order (each one SQL string or several), numbered from 1."""
    migrations = tuple(
        Migration(n, (step,) if isinstance(step, str) else tuple(step)) for n, step in enumerate(steps, start=1)
    )
    return Schema(component, migrations, legacy)


async def _exists(conn: asyncpg.Connection, name: str) -> bool:
    return await conn.fetchval("SELECT to_regclass($1)", name) is not None


def legacy_table(table: str) -> LegacyVersion:
    """The version in an older release's own table (every one had an integer ``version`` column)."""

    async def read(conn: asyncpg.Connection) -> int:
        if not await _exists(conn, table):
            return 0
        return int(await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {table}"))

    return read


def legacy_objects(names: Iterable[str], version: int = 1) -> LegacyVersion:
    """For a schema an older release created without bookkeeping: ``version`` when all ``names`` exist."""
    wanted = tuple(names)

    async def read(conn: asyncpg.Connection) -> int:
        for name in wanted:
            if not await _exists(conn, name):
                return 0
        return version

    return read


async def _recorded(conn: asyncpg.Connection, component: str) -> int | None:
    """The version in the bookkeeping table; None when the table or the component's rows are missing."""
    if not await _exists(conn, TABLE):
        return None
    found = await conn.fetchval(f"SELECT max(version) FROM {TABLE} WHERE component = $1", component)
    return None if found is None else int(found)


async def applied_version(conn: asyncpg.Connection, schema: Schema) -> int:
    """How far this database got: the bookkeeping table's version, else the older release's, else 0."""
    recorded = await _recorded(conn, schema.component)
    if recorded is not None:
        return recorded
    return await schema.legacy(conn) if schema.legacy is not None else 0


async def migrate(conn: asyncpg.Connection, schema: Schema) -> int:
    """Applies the pending migrations (adopting an older release's version first); returns the version now."""
    async with conn.transaction():
        await conn.execute(LOCK)
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (component text NOT NULL, version int NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now(), adopted boolean NOT NULL DEFAULT false, "
            "PRIMARY KEY (component, version))"
        )
        have = await _recorded(conn, schema.component)
        if have is None:
            have = await schema.legacy(conn) if schema.legacy is not None else 0
            if have:
                await conn.executemany(
                    f"INSERT INTO {TABLE} (component, version, adopted) VALUES ($1, $2, true)",
                    [(schema.component, v) for v in range(1, have + 1)],
                )
        for migration in schema.migrations[have:]:
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                f"INSERT INTO {TABLE} (component, version) VALUES ($1, $2)", schema.component, migration.version
            )
        return max(have, schema.latest)


async def check(conn: asyncpg.Connection, schema: Schema) -> None:
    """Refuses a schema behind this release (no DDL: for ``LOOMFLOW_MIGRATE=false``)."""
    have = await applied_version(conn, schema)
    if have < schema.latest:
        raise SchemaBehind(
            f"{schema.component} schema is at version {have}, this release needs {schema.latest} "
            f"and LOOMFLOW_MIGRATE=false: {RUN_MIGRATE}"
        )


async def migrate_or_check(conn: asyncpg.Connection, schema: Schema, *, apply: bool) -> None:
    """At start: :func:`migrate` when ``apply``, else :func:`check`."""
    if apply:
        await migrate(conn, schema)
    else:
        await check(conn, schema)


@dataclass(frozen=True)
class Declared:
    """A service's Postgres schema as ``loomflow migrate`` sees it.

    ``setting``: the field of the service's settings that names its database. ``apply``: brings that
    database current given the service's settings, through the backend's own start-up code with
    migrations on (so the DDL has one copy); it imports the backend itself, the postgres extra."""

    setting: str
    apply: Callable[[Any], Awaitable[None]]

    def database(self, settings: Any) -> str | None:
        """The DSN to migrate, or None when the configured backend is not Postgres (embedded stores
        migrate themselves at start)."""
        dsn = str(getattr(settings, self.setting))
        return dsn if dsns.parse(dsn).is_postgres else None


async def apply_declared(declared: Declared, settings: Any) -> bool:
    """Runs one service's declared migrations; False when its backend is not Postgres (nothing to do)."""
    if declared.database(settings) is None:
        return False
    await declared.apply(settings)
    return True
