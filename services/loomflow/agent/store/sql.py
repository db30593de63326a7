"""SQL shared by the SQLite and Postgres agent stores (``?`` placeholders; :func:`numbered` for asyncpg)."""

from __future__ import annotations

from functools import cache

DEFINITION_COLUMNS = "name, body, version, updated_at"
PAUSED_COLUMNS = "tenant, run_id, state, reservation_id, expires_at, status"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS agent_definitions (
        name TEXT PRIMARY KEY, body TEXT NOT NULL, version BIGINT NOT NULL, updated_at BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS agent_paused_runs (
        tenant TEXT NOT NULL, run_id TEXT NOT NULL, state TEXT NOT NULL, reservation_id TEXT NOT NULL,
        expires_at BIGINT NOT NULL, status TEXT NOT NULL,
        PRIMARY KEY (tenant, run_id)
    )""",
    "CREATE INDEX IF NOT EXISTS agent_paused_by_expiry ON agent_paused_runs (status, expires_at)",
)

UPSERT_DEFINITION = (
    f"INSERT INTO agent_definitions ({DEFINITION_COLUMNS}) VALUES (?, ?, 1, ?) "
    "ON CONFLICT (name) DO UPDATE SET body = excluded.body, version = agent_definitions.version + 1, "
    f"updated_at = excluded.updated_at RETURNING {DEFINITION_COLUMNS}"
)
GET_DEFINITION = f"SELECT {DEFINITION_COLUMNS} FROM agent_definitions WHERE name = ?"
LIST_DEFINITIONS = f"SELECT {DEFINITION_COLUMNS} FROM agent_definitions WHERE name > ? ORDER BY name LIMIT ?"
DELETE_DEFINITION = "DELETE FROM agent_definitions WHERE name = ? RETURNING version"

COUNT_LIVE_PAUSED = "SELECT count(*) FROM agent_paused_runs WHERE tenant = ? AND status = 'paused' AND expires_at > ?"
INSERT_PAUSED = f"INSERT INTO agent_paused_runs ({PAUSED_COLUMNS}) VALUES (?, ?, ?, ?, ?, 'paused')"
GET_PAUSED = f"SELECT {PAUSED_COLUMNS} FROM agent_paused_runs WHERE tenant = ? AND run_id = ?"
TAKE_PAUSED = (
    f"DELETE FROM agent_paused_runs WHERE tenant = ? AND run_id = ? AND status = 'paused' RETURNING {PAUSED_COLUMNS}"
)
DUE_PAUSED = (
    f"SELECT {PAUSED_COLUMNS} FROM agent_paused_runs WHERE status = 'paused' AND expires_at <= ? "
    "ORDER BY expires_at LIMIT ?"
)
MARK_EXPIRED = (
    "UPDATE agent_paused_runs SET status = 'expired', state = '{}' "
    "WHERE tenant = ? AND run_id = ? AND status = 'paused'"
)
PURGE_EXPIRED = "DELETE FROM agent_paused_runs WHERE status = 'expired' AND expires_at < ?"


@cache
def numbered(statement: str) -> str:
    """``?`` placeholders → ``$1, $2, ...`` (asyncpg). Our statements have no ``?`` inside literals."""
    parts = statement.split("?")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))
