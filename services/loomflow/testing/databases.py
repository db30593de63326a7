"""Databases for tests: a DSN per backend, isolated per test on the shared Postgres and Redis.

The servers come from the environment: ``LOOMFLOW_TEST_POSTGRES_DSN`` and
``LOOMFLOW_TEST_REDIS_URL`` (``eval "$(scripts/services.sh start)"`` exports both).
A test asks for its backend by name and gets a DSN no other test shares::

    async with isolated_dsn("postgres", tmp_path, "policy_" + unique) as dsn:
        store = open_store(dsn, tmp_path)

Postgres isolation is a schema of its own (the DSN's ``search_path``), Redis isolation a key
prefix (``?key_prefix=``, read by the budget ledger), file backends a file under the test's
folder; every one is removed afterwards. asyncpg and redis are imported only when used, so
this module imports without the ``postgres`` and ``redis`` extras.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

from loomflow.kernel.backends import dsn as dsns

POSTGRES_ENV = "LOOMFLOW_TEST_POSTGRES_DSN"
REDIS_ENV = "LOOMFLOW_TEST_REDIS_URL"
START_HINT = 'start them with: eval "$(scripts/services.sh start)"'

SERVER_BACKENDS = ("postgres", "redis")

T = TypeVar("T")
"""Backends that are a shared server (the rest live in the test's own folder)."""


class BackendUnavailable(RuntimeError):
    """The environment names no server for a backend a test asked for."""


def from_env(variable: str, what: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise BackendUnavailable(f"{what} not available: {variable} is unset; {START_HINT}")
    return value


def postgres_dsn() -> str:
    """The shared Postgres (``LOOMFLOW_TEST_POSTGRES_DSN``)."""
    return from_env(POSTGRES_ENV, "Postgres")


def redis_url() -> str:
    """The shared Redis (``LOOMFLOW_TEST_REDIS_URL``)."""
    return from_env(REDIS_ENV, "Redis")


def with_query(dsn: str, **params: str) -> str:
    """``dsn`` with ``params`` appended to its query string."""
    parts = urlsplit(dsn)
    query = "&".join(filter(None, [parts.query, urlencode(params)]))
    return urlunsplit(parts._replace(query=query))


def with_search_path(dsn: str, schema: str) -> str:
    """A Postgres DSN whose tables live in ``schema`` (every loomflow Postgres backend honours it);
    the kernel's DSN type builds it, so tests and services agree on one form."""
    return dsns.parse(dsn).with_search_path(schema).secret_url


def with_database(dsn: str, database: str) -> str:
    """The same server, another database (Postgres) or logical db number (Redis)."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


@contextlib.asynccontextmanager
async def postgres_schema(name: str, base: str | None = None) -> AsyncIterator[str]:
    """A DSN into a fresh schema ``name`` of the shared Postgres, dropped with its tables afterwards.

    No connection is held while the schema is in use; a synchronous caller enters it with
    :func:`entered`."""
    server = base or postgres_dsn()
    await _admin(server, f"CREATE SCHEMA {name}")
    try:
        yield with_search_path(server, name)
    finally:
        await _admin(server, f"DROP SCHEMA IF EXISTS {name} CASCADE")


async def _admin(server: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def drop_redis_keys(url: str, prefix: str) -> int:
    """Deletes every key that contains ``prefix`` (hash-tagged ``{prefix}…`` keys included)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"*{prefix}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
        return len(keys)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def redis_prefix(prefix: str, base: str | None = None) -> AsyncIterator[str]:
    """A DSN into the shared Redis whose keys start with ``prefix`` (``?key_prefix=``), deleted afterwards."""
    server = base or redis_url()
    try:
        yield with_query(server, key_prefix=prefix)
    finally:
        await drop_redis_keys(server, prefix)


def shared_dsn(backend: str, data_dir: Path, name: str) -> str:
    """The DSN of ``backend``: the shared server itself, or a store called ``name`` under ``data_dir``.

    Backend names are the conformance suites' parameter ids; ``inprocess`` (Budget's name for its
    in-memory ledger) is ``memory://``.
    """
    if backend in ("memory", "inprocess"):
        return "memory://"
    if backend == "sqlite":
        return f"sqlite://{data_dir}/{name}.db"
    if backend == "file":
        return f"file://{data_dir}/{name}"
    if backend == "chroma":
        return f"chroma://{data_dir}/{name}"
    if backend == "postgres":
        return postgres_dsn()
    if backend == "redis":
        return redis_url()
    raise ValueError(f"unknown backend {backend!r}")


@contextlib.asynccontextmanager
async def isolated_dsn(
    backend: str, data_dir: Path, name: str, *, key_prefix: bool = True, server: str | None = None
) -> AsyncIterator[str]:
    """A DSN of ``backend`` that nothing else uses, removed afterwards.

    Postgres gets a schema ``name``; Redis a key prefix ``name`` unless ``key_prefix`` is False
    (stores that isolate by tenant id and take no prefix, such as Memory's); the rest are
    ``shared_dsn`` under ``data_dir``, which the test owns. ``server`` names another Postgres or
    Redis than the environment's.
    """
    if backend == "postgres":
        async with postgres_schema(name, server) as dsn:
            yield dsn
    elif backend == "redis" and key_prefix:
        async with redis_prefix(name, server) as dsn:
            yield dsn
    elif backend in SERVER_BACKENDS and server:
        yield server
    else:
        yield shared_dsn(backend, data_dir, name)


@contextlib.contextmanager
def entered(manager: contextlib.AbstractAsyncContextManager[T]) -> Iterator[T]:
    """An async context manager (a schema, a key prefix) used from synchronous code.

    It is entered and left on one private event loop that stays open in between: entered with
    ``asyncio.run``, a generator-based manager is finalized as that call returns (the loop closes
    the async generators it started), so its clean-up ran at once: the schema was dropped right
    after it was created (tests/test_testing_databases.py)."""
    loop = asyncio.new_event_loop()
    try:
        value = loop.run_until_complete(manager.__aenter__())
        try:
            yield value
        finally:
            loop.run_until_complete(manager.__aexit__(None, None, None))
    finally:
        loop.close()
