"""Postgres specifics: idempotent concurrent migrations, the pgvector fallback, Unavailable on lost connections."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from loomflow.kernel.backends import migrations
from loomflow.kernel.errors import Unavailable
from loomflow.memory.models import EpisodeDraft, RecallQuery, now_micros
from loomflow.memory.store.postgres import SCHEMA, PostgresStore

pytestmark = pytest.mark.postgres


async def test_many_stores_starting_at_once_migrate_exactly_once(postgres_dsn: str) -> None:
    stores = [PostgresStore(postgres_dsn, pool_size=2) for _ in range(4)]
    await asyncio.gather(*(s.start() for s in stores))
    try:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            versions = [
                r[0]
                for r in await conn.fetch(
                    f"SELECT version FROM {migrations.TABLE} WHERE component = 'memory' ORDER BY 1"
                )
            ]
        finally:
            await conn.close()
        assert versions == [m.version for m in SCHEMA.migrations], "each migration is recorded once"
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_without_pgvector_recall_falls_back_to_the_exact_per_tenant_scan(postgres_dsn: str, unique: str) -> None:
    conn = await asyncpg.connect(postgres_dsn)
    try:
        installable = await conn.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")
    finally:
        await conn.close()
    store = PostgresStore(postgres_dsn)
    await store.start()
    try:
        assert store.vector_search == ("pgvector" if installable else "exact")
        tenant = f"alice-{unique}"
        await store.remember(tenant, EpisodeDraft("", "we talked about gardening", ""), now_micros())
        target = await store.remember(tenant, EpisodeDraft("", "the invoice total was 42 euros", ""), now_micros())
        hits = await store.recall(tenant, RecallQuery(text="invoices and totals", limit=1))
        assert [h.episode.id for h in hits] == [target.id]
        assert hits[0].vector_score > 0
    finally:
        await store.close()


class Proxy:
    """A TCP relay to Postgres that a test can cut, to play a database that went away."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        self._writers += [client_writer, server_writer]

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()


@contextlib.asynccontextmanager
async def proxied(postgres_dsn: str) -> AsyncIterator[tuple[Proxy, str]]:
    parts = urlsplit(postgres_dsn)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    port = await proxy.start()
    yield proxy, postgres_dsn.replace(f":{parts.port}/", f":{port}/")


async def test_lost_database_answers_unavailable_not_internal(postgres_dsn: str, unique: str) -> None:
    async with proxied(postgres_dsn) as (proxy, dsn):
        store = PostgresStore(dsn, pool_size=1, connect_timeout=2.0)
        await store.start()
        try:
            tenant = f"alice-{unique}"
            await store.remember(tenant, EpisodeDraft("", "before the outage", ""), now_micros())
            await proxy.cut()
            with pytest.raises(Unavailable):
                await store.remember(tenant, EpisodeDraft("", "during the outage", ""), now_micros())
            with pytest.raises(Unavailable):
                await store.recall(tenant, RecallQuery(text="outage", limit=1))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(store.close(), 2)


async def test_unreachable_database_fails_start_with_unavailable() -> None:
    store = PostgresStore("postgres://loomflow@127.0.0.1:1/loomflow", connect_timeout=1.0)
    with pytest.raises(Unavailable):
        await store.start()
