"""SQL shared by the SQLite and Postgres backends: statements and row decoding.

Statements are written with ``?`` placeholders (SQLite); :func:`numbered`
rewrites them to ``$1, $2, ...`` for asyncpg. Every statement names the tenant
in its WHERE clause or key, including by-id reads, and every table's primary
key starts with the tenant. ``COLLATE "C"`` ordering (Postgres) and SQLite's
default BINARY collation both order text by code point, like Python.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any

from loomflow.memory.models import Block, Episode, Fact, SessionPage

EPISODE_COLUMNS = "tenant, seq, id, session_id, input, output, metadata, run_id, created_at"
BLOCK_COLUMNS = "tenant, label, session_id, content, version, updated_at"
FACT_COLUMNS = (
    "tenant, id, row_id, subject, predicate, object, session_id, valid_from, valid_until, recorded_at, retracted_at"
)

# Every write starts here: it creates the tenant's row or locks it (Postgres
# holds the row lock until commit), so writes and Forgets of one tenant are
# serialised and a write sees any tombstone committed before it.
LOCK_TENANT = (
    "INSERT INTO memory_tenants (tenant, epoch, seq) VALUES (?, 0, 0) "
    "ON CONFLICT (tenant) DO UPDATE SET epoch = memory_tenants.epoch RETURNING epoch"
)
ADVANCE_SEQ = (
    "INSERT INTO memory_tenants (tenant, epoch, seq) VALUES (?, 0, ?) "
    "ON CONFLICT (tenant) DO UPDATE SET seq = memory_tenants.seq + excluded.seq RETURNING seq"
)
"""Reserves the next ``count`` episode seqs (parameters: tenant, count) and returns the last one."""
BUMP_EPOCH = (
    "INSERT INTO memory_tenants (tenant, epoch, seq) VALUES (?, 1, 0) "
    "ON CONFLICT (tenant) DO UPDATE SET epoch = memory_tenants.epoch + 1 RETURNING epoch"
)
PROBE = "SELECT epoch, seq FROM memory_tenants WHERE tenant = ?"
INSERT_EPISODE = f"INSERT INTO memory_episodes ({EPISODE_COLUMNS}, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

TOMBSTONE_CUTOFFS = "SELECT cutoff FROM memory_tombstones WHERE tenant = ? AND scope_key IN (?, ?)"
PUT_TOMBSTONE = (
    "INSERT INTO memory_tombstones (tenant, scope_key, cutoff) VALUES (?, ?, ?) "
    "ON CONFLICT (tenant, scope_key) DO UPDATE SET cutoff = CASE "
    "WHEN excluded.cutoff > memory_tombstones.cutoff THEN excluded.cutoff ELSE memory_tombstones.cutoff END"
)

EPISODE_BY_ID = f"SELECT {EPISODE_COLUMNS} FROM memory_episodes WHERE tenant = ? AND id = ?"
EPISODES_AFTER = (
    "SELECT seq, session_id, input, output, embedding FROM memory_episodes WHERE tenant = ? AND seq > ? ORDER BY seq"
)
TENANTS_AFTER = "SELECT tenant FROM memory_tenants WHERE tenant > ? ORDER BY tenant LIMIT ?"
EPISODE_VECTORS_PAGE = (
    "SELECT seq, input, output, embedding FROM memory_episodes WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?"
)
UPDATE_EMBEDDING = "UPDATE memory_episodes SET embedding = ? WHERE tenant = ? AND seq = ?"
SESSION_INDEX = "CREATE INDEX IF NOT EXISTS memory_episodes_by_session ON memory_episodes (tenant, session_id, seq)"
"""Serves ListEpisodes: a page of one session, newest first, reads only that page's rows."""
SESSION_PAGE = (
    f"SELECT {EPISODE_COLUMNS} FROM memory_episodes WHERE tenant = ? AND session_id = ? AND seq < ? "
    "ORDER BY seq DESC LIMIT ?"
)
NO_SEQ_BOUND = 2**62
"""``before_seq`` of the first page (above any seq a tenant can reach)."""


def session_page_params(tenant: str, page: SessionPage) -> tuple[Any, ...]:
    before = NO_SEQ_BOUND if page.before_seq is None else page.before_seq
    return (tenant, page.session_id, before, page.limit)


EPISODES_PAGE = f"SELECT {EPISODE_COLUMNS} FROM memory_episodes WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?"

BLOCK_VERSION = "SELECT version FROM memory_blocks WHERE tenant = ? AND session_id = ? AND label = ?"
UPSERT_BLOCK = (
    f"INSERT INTO memory_blocks ({BLOCK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (tenant, session_id, label) DO UPDATE SET "
    "content = excluded.content, version = excluded.version, updated_at = excluded.updated_at"
)


def other_block_bytes(postgres: bool) -> str:
    """UTF-8 bytes of a tenant's blocks but one (parameters: tenant, session_id, label)."""
    size = "octet_length(content)" if postgres else "length(CAST(content AS BLOB))"
    return f"SELECT coalesce(sum({size}), 0) FROM memory_blocks WHERE tenant = ? AND NOT (session_id = ? AND label = ?)"


GET_BLOCK = f"SELECT {BLOCK_COLUMNS} FROM memory_blocks WHERE tenant = ? AND session_id = ? AND label = ?"
DELETE_BLOCK = "DELETE FROM memory_blocks WHERE tenant = ? AND session_id = ? AND label = ?"

BELIEVED_FACTS = (
    f"SELECT {FACT_COLUMNS} FROM memory_facts "
    "WHERE tenant = ? AND subject = ? AND predicate = ? AND retracted_at IS NULL"
)
RETRACT_ROW = "UPDATE memory_facts SET retracted_at = ? WHERE tenant = ? AND row_id = ?"
INSERT_FACT = f"INSERT INTO memory_facts ({FACT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
RETRACT_FACT = (
    "UPDATE memory_facts SET retracted_at = ? WHERE tenant = ? AND id = ? AND retracted_at IS NULL "
    f"RETURNING {FACT_COLUMNS}"
)


def order_text(column: str, postgres: bool) -> str:
    return f'{column} COLLATE "C"' if postgres else column


def blocks_query(session_id: str | None, postgres: bool) -> str:
    where = "tenant = ?" + ("" if session_id is None else " AND session_id = ?")
    ordering = ", ".join(order_text(c, postgres) for c in ("session_id", "label"))
    return f"SELECT {BLOCK_COLUMNS} FROM memory_blocks WHERE {where} ORDER BY {ordering}"


def fact_order(postgres: bool) -> str:
    """ORDER BY matching :func:`loomflow.memory.facts.answer_order`."""
    subject, predicate, row_id = (order_text(c, postgres) for c in ("subject", "predicate", "row_id"))
    return f"{subject}, {predicate}, valid_from, recorded_at, {row_id}"


def facts_query(subject: str, predicate: str, history: bool, postgres: bool, after: bool = False) -> str:
    """SELECT for QueryFacts; parameters: tenant, [subject], [predicate], [known, known, valid, valid],
    [the five answer-order values to page after], limit."""
    where = ["tenant = ?"]
    if subject:
        where.append("subject = ?")
    if predicate:
        where.append("predicate = ?")
    if not history:
        where.append("recorded_at <= ? AND (retracted_at IS NULL OR retracted_at > ?)")
        where.append("valid_from <= ? AND (valid_until IS NULL OR valid_until > ?)")
    if after:
        where.append(f"({fact_order(postgres)}) > (?, ?, ?, ?, ?)")
    conditions = " AND ".join(where)
    return f"SELECT {FACT_COLUMNS} FROM memory_facts WHERE {conditions} ORDER BY {fact_order(postgres)} LIMIT ?"


def all_facts_query(postgres: bool) -> str:
    return f"SELECT {FACT_COLUMNS} FROM memory_facts WHERE tenant = ? ORDER BY {fact_order(postgres)}"


def forget_statements(session_id: str | None) -> tuple[str, str, str]:
    """DELETEs of episodes, blocks and fact versions; parameters: tenant, cutoff, [session_id]."""
    session = "" if session_id is None else " AND session_id = ?"
    return (
        f"DELETE FROM memory_episodes WHERE tenant = ? AND created_at < ?{session}",
        f"DELETE FROM memory_blocks WHERE tenant = ? AND updated_at < ?{session}",
        f"DELETE FROM memory_facts WHERE tenant = ? AND recorded_at < ?{session} RETURNING id",
    )


def forget_params(tenant: str, cutoff: int, session_id: str | None) -> tuple[Any, ...]:
    return (tenant, cutoff) if session_id is None else (tenant, cutoff, session_id)


def episodes_by_seq(count: int) -> str:
    marks = ", ".join("?" * count)
    return f"SELECT {EPISODE_COLUMNS} FROM memory_episodes WHERE tenant = ? AND seq IN ({marks})"


@cache
def numbered(statement: str) -> str:
    """``?`` placeholders → ``$1, $2, ...`` (asyncpg). Our statements have no ``?`` inside literals."""
    parts = statement.split("?")
    out = [parts[0]]
    for i, part in enumerate(parts[1:], start=1):
        out.append(f"${i}{part}")
    return "".join(out)


def episode_values(episode: Episode) -> tuple[Any, ...]:
    return (
        episode.tenant,
        episode.seq,
        episode.id,
        episode.session_id,
        episode.input,
        episode.output,
        json.dumps(dict(episode.metadata), separators=(",", ":"), sort_keys=True),
        episode.run_id,
        episode.created_at,
    )


def episode_from(row: Sequence[Any]) -> Episode:
    return Episode(
        tenant=row[0],
        seq=int(row[1]),
        id=row[2],
        session_id=row[3],
        input=row[4],
        output=row[5],
        metadata=_json_object(row[6]),
        run_id=row[7],
        created_at=int(row[8]),
    )


def _json_object(text: str) -> dict[str, Any]:
    """Decodes a stored metadata map; most are empty, and a Recall decodes one per hit."""
    if text == "{}":
        return {}
    decoded: dict[str, Any] = json.loads(text)
    return decoded


def block_values(block: Block) -> tuple[Any, ...]:
    return (block.tenant, block.label, block.session_id, block.content, block.version, block.updated_at)


def block_from(row: Sequence[Any]) -> Block:
    return Block(
        tenant=row[0], label=row[1], session_id=row[2], content=row[3], version=int(row[4]), updated_at=int(row[5])
    )


def fact_values(fact: Fact) -> tuple[Any, ...]:
    return (
        fact.tenant,
        fact.id,
        fact.row_id,
        fact.subject,
        fact.predicate,
        fact.object,
        fact.session_id,
        fact.valid_from,
        fact.valid_until,
        fact.recorded_at,
        fact.retracted_at,
    )


def fact_from(row: Sequence[Any]) -> Fact:
    return Fact(
        tenant=row[0],
        id=row[1],
        row_id=row[2],
        subject=row[3],
        predicate=row[4],
        object=row[5],
        session_id=row[6],
        valid_from=int(row[7]),
        valid_until=None if row[8] is None else int(row[8]),
        recorded_at=int(row[9]),
        retracted_at=None if row[10] is None else int(row[10]),
    )
