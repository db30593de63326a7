"""The Agent's durable store, chosen by DSN: SQLite under the data directory by default, Postgres in production."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from loomflow.agent.store.base import AgentStore, PausedRecord, StoredDefinition
from loomflow.kernel.config import ConfigError

FILE_NAME = "agent.db"


def open_agent_store(dsn: str, data_dir: str | Path, *, migrate: bool = True) -> AgentStore:
    """The store a DSN names; empty is ``<data_dir>/agent.db`` (SQLite)."""
    scheme = urlsplit(dsn).scheme.lower() if dsn else "sqlite"
    if not dsn:
        from loomflow.agent.store.sqlite import SQLiteAgentStore

        return SQLiteAgentStore(Path(data_dir) / FILE_NAME)
    if scheme == "sqlite":
        from loomflow.agent.store.sqlite import SQLiteAgentStore

        path = dsn[len("sqlite://") :]
        if not path:
            raise ConfigError("LOOMFLOW_AGENT_STORE_DSN: sqlite:// needs a file path, e.g. sqlite:///var/lib/agent.db")
        return SQLiteAgentStore(path)
    if scheme in ("postgres", "postgresql"):
        from loomflow.agent.store.postgres import PostgresAgentStore

        return PostgresAgentStore(dsn, migrate=migrate)
    raise ConfigError(f"LOOMFLOW_AGENT_STORE_DSN={dsn!r}: use sqlite:///path or postgres://…")


__all__ = ["AgentStore", "PausedRecord", "StoredDefinition", "open_agent_store"]
