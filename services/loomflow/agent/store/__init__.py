"""The Agent's durable store, chosen by DSN: SQLite under the data directory by default, Postgres in production."""

from __future__ import annotations

from pathlib import Path

from loomflow.agent.store.base import AgentStore, PausedRecord, StoredDefinition
from loomflow.kernel.backends import dsn as dsns
from loomflow.kernel.config import ConfigError

FILE_NAME = "agent.db"


def open_agent_store(dsn: str, data_dir: str | Path, *, migrate: bool = True) -> AgentStore:
    """The store a DSN names; empty is ``<data_dir>/agent.db`` (SQLite)."""
    parsed = dsns.parse(dsn, "LOOMFLOW_AGENT_STORE_DSN")
    if not dsn:
        from loomflow.agent.store.sqlite import SQLiteAgentStore

        return SQLiteAgentStore(Path(data_dir) / FILE_NAME)
    if parsed.scheme == "sqlite":
        from loomflow.agent.store.sqlite import SQLiteAgentStore

        return SQLiteAgentStore(parsed.file_path("sqlite:///var/lib/agent.db"))
    if parsed.is_postgres:
        from loomflow.agent.store.postgres import PostgresAgentStore

        return PostgresAgentStore(dsn, migrate=migrate)
    raise ConfigError(f"LOOMFLOW_AGENT_STORE_DSN={parsed.redacted!r}: use sqlite:///path or postgres://…")


__all__ = ["AgentStore", "PausedRecord", "StoredDefinition", "open_agent_store"]
