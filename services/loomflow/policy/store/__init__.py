"""Policy stores, chosen by DSN: empty or ``sqlite:///path`` (embedded), ``postgres://…``."""

from __future__ import annotations

from pathlib import Path

from loomflow.kernel import extras
from loomflow.kernel.backends import dsn as dsns
from loomflow.policy.store.base import Change, ChangeKind, ChangeListener, PolicyStore

SCHEMES = ("sqlite:///path", "postgres://…", "postgresql://…")
POOL_SIZE = 10
"""Postgres connections by default (the Policy settings' ``pool_size`` default too)."""


def open_store(dsn: str, data_dir: str | Path, pool_size: int = POOL_SIZE, *, migrate: bool = True) -> PolicyStore:
    """The store a DSN names; empty means ``<data_dir>/policy.db``. Connects in ``start()``."""
    if not dsn:
        from loomflow.policy.store.sqlite import SqliteStore

        return SqliteStore(str(Path(data_dir) / "policy.db"))
    parsed = dsns.parse(dsn, "LOOMFLOW_POLICY_DSN")
    if parsed.scheme == "sqlite":
        from loomflow.policy.store.sqlite import SqliteStore

        return SqliteStore(parsed.file_path("sqlite:///var/lib/policy.db"))  # sqlite:///abs/policy.db → /abs/…
    if parsed.is_postgres:
        extras.require("postgres", f"LOOMFLOW_POLICY_DSN={parsed.scheme}://…")
        from loomflow.policy.store.postgres import PostgresStore

        return PostgresStore(dsn, pool_size=pool_size, migrate=migrate)
    raise parsed.unknown_scheme(", ".join(SCHEMES))


__all__ = ["Change", "ChangeKind", "ChangeListener", "PolicyStore", "open_store"]
