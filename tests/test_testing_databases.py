"""loomflow.testing.databases from synchronous code: the schema exists while it is in use."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from loomflow.testing import databases

pytestmark = pytest.mark.postgres


async def schemas_named(name: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(databases.postgres_dsn())
    try:
        return [r[0] for r in await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname = $1", name)]
    finally:
        await conn.close()


def test_a_schema_entered_from_synchronous_code_lives_until_it_is_left() -> None:
    name = f"entered_{uuid.uuid4().hex[:8]}"
    with databases.entered(databases.postgres_schema(name)) as dsn:
        assert dsn.endswith(f"search_path={name}")
        assert asyncio.run(schemas_named(name)) == [name], "dropped while in use (asyncio.run finalized it)"
    assert asyncio.run(schemas_named(name)) == [], "left behind"
