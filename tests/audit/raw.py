"""Direct access to what a sink stores, bypassing the service: how the tests play the attacker.

Each sink exposes its entries in storage order as plain :class:`Entry` values
and can be overwritten with an edited list, so one tamper suite runs against
every sink.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

import asyncpg

from loomflow.audit.models import Entry
from loomflow.audit.sink import jsonl
from loomflow.audit.sink.file import ENTRIES
from loomflow.audit.sink.postgres import ENTRY_COLUMNS, SELECT_ENTRIES, entry_record, row_entry


class RawStore(Protocol):
    async def entries(self) -> list[Entry]: ...

    async def overwrite(self, entries: list[Entry]) -> None: ...


class RawFile:
    def __init__(self, folder: Path) -> None:
        self.path = folder / ENTRIES

    async def entries(self) -> list[Entry]:
        return [jsonl.decode(line) for line in self.path.read_bytes().splitlines(keepends=True)]

    async def overwrite(self, entries: list[Entry]) -> None:
        self.path.write_bytes(b"".join(jsonl.encode(e) for e in entries))


class RawPostgres:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def entries(self) -> list[Entry]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return [row_entry(r) for r in await conn.fetch(f"{SELECT_ENTRIES} ORDER BY user_id, seq")]
        finally:
            await conn.close()

    async def overwrite(self, entries: list[Entry]) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            async with conn.transaction():
                await conn.execute("DELETE FROM audit_entries")
                await conn.copy_records_to_table(
                    "audit_entries", records=[entry_record(e) for e in entries], columns=ENTRY_COLUMNS
                )
        finally:
            await conn.close()


def raw_store(dsn: str) -> RawStore:
    if dsn.startswith("file:"):
        return RawFile(Path(unquote(urlparse(dsn).path)))
    return RawPostgres(dsn)
