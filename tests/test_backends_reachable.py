"""The real Postgres and Redis the conformance suites use are up (CI must never skip them)."""

from __future__ import annotations

import asyncpg
import redis.asyncio as redis


async def test_postgres_answers(postgres_dsn: str) -> None:
    connection = await asyncpg.connect(postgres_dsn)
    try:
        version = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    assert str(version).startswith("15"), f"expected Postgres 15, got {version}"


async def test_redis_answers(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()
