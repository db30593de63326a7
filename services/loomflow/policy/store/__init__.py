"""Policy stores, chosen by DSN: empty or ``sqlite:///path`` (embedded), ``postgres://…``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from loomflow.kernel import extras
from loomflow.kernel.config import ConfigError
from loomflow.policy.store.base import Change, ChangeKind, ChangeListener, PolicyStore

SCHEMES = ("sqlite:///path", "postgres://…", "postgresql://…")


def open_store(dsn: str, data_dir: str | Path, pool_size: int = 10, *, migrate: bool = True) -> PolicyStore:
    """The store a DSN names; empty means ``<data_dir>/policy.db``. Connects in ``start()``."""
    if not dsn:
        from loomflow.policy.store.sqlite import SqliteStore

        return SqliteStore(str(Path(data_dir) / "policy.db"))
    scheme = urlsplit(dsn).scheme.lower()
    if scheme == "sqlite":
        from loomflow.policy.store.sqlite import SqliteStore

        path = dsn[len("sqlite://") :]  # sqlite:///abs/policy.db → /abs/policy.db
        if not path or path == ":memory:":
            raise ConfigError("LOOMFLOW_POLICY_DSN: sqlite:// needs a file path, e.g. sqlite:///var/lib/policy.db")
        return SqliteStore(path)
    if scheme in ("postgres", "postgresql"):
        extras.require("postgres", f"LOOMFLOW_POLICY_DSN={scheme}://…")
        from loomflow.policy.store.postgres import PostgresStore

        return PostgresStore(dsn, pool_size=pool_size, migrate=migrate)
    raise ConfigError(f"LOOMFLOW_POLICY_DSN={dsn!r}: unknown scheme; use one of {', '.join(SCHEMES)}")


__all__ = ["Change", "ChangeKind", "ChangeListener", "PolicyStore", "open_store"]
