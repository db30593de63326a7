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
    # ForgetUser's durable jobs (loomflow.agent.erasure): one row per erasure, its steps as JSON.
    """CREATE TABLE IF NOT EXISTS agent_erasures (
        id TEXT PRIMARY KEY, tenant TEXT NOT NULL, request_id TEXT NOT NULL, body TEXT NOT NULL,
        state TEXT NOT NULL, next_attempt_at BIGINT NOT NULL, leased_until BIGINT NOT NULL, created_at BIGINT NOT NULL
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS agent_erasures_by_request ON agent_erasures (tenant, request_id)",
    "CREATE INDEX IF NOT EXISTS agent_erasures_due ON agent_erasures (state, next_attempt_at)",
    # ForgetUser's tombstones: a pause whose request started before the cutoff is refused.
    "CREATE TABLE IF NOT EXISTS agent_forgotten (tenant TEXT PRIMARY KEY, cutoff BIGINT NOT NULL)",
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

FORGOTTEN_CUTOFF = "SELECT cutoff FROM agent_forgotten WHERE tenant = ?"
RECORD_FORGOTTEN = (
    "INSERT INTO agent_forgotten (tenant, cutoff) VALUES (?, ?) "
    "ON CONFLICT (tenant) DO UPDATE SET cutoff = CASE WHEN excluded.cutoff > agent_forgotten.cutoff "
    "THEN excluded.cutoff ELSE agent_forgotten.cutoff END"
)
FORGET_PAUSED = f"DELETE FROM agent_paused_runs WHERE tenant = ? RETURNING {PAUSED_COLUMNS}"
EXPORT_PAUSED = f"SELECT {PAUSED_COLUMNS} FROM agent_paused_runs WHERE tenant = ? ORDER BY run_id"

ERASURE_COLUMNS = "id, tenant, request_id, body, state, next_attempt_at, leased_until, created_at"
INSERT_ERASURE = (
    f"INSERT INTO agent_erasures ({ERASURE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (tenant, request_id) DO NOTHING"
)
ERASURE_BY_REQUEST = f"SELECT {ERASURE_COLUMNS} FROM agent_erasures WHERE tenant = ? AND request_id = ?"
PENDING_ERASURE = (
    f"SELECT {ERASURE_COLUMNS} FROM agent_erasures WHERE tenant = ? AND state = 'pending' ORDER BY created_at LIMIT 1"
)
GET_ERASURE = f"SELECT {ERASURE_COLUMNS} FROM agent_erasures WHERE tenant = ? AND id = ?"
CLAIM_ERASURE = (
    "UPDATE agent_erasures SET leased_until = ? WHERE id = ? AND state = 'pending' AND leased_until <= ? "
    f"RETURNING {ERASURE_COLUMNS}"
)
SAVE_ERASURE = "UPDATE agent_erasures SET body = ?, state = ?, next_attempt_at = ?, leased_until = 0 WHERE id = ?"
DUE_ERASURES = (
    "SELECT id FROM agent_erasures WHERE state = 'pending' AND next_attempt_at <= ? AND leased_until <= ? "
    "ORDER BY next_attempt_at LIMIT ?"
)


@cache
def numbered(statement: str) -> str:
    """``?`` placeholders → ``$1, $2, ...`` (asyncpg). Our statements have no ``?`` inside literals."""
    parts = statement.split("?")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))
