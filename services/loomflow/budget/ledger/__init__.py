"""Ledger backends, chosen by DSN: in-process (empty or ``memory://``), ``redis://``, ``postgres://``."""

from __future__ import annotations

from dataclasses import dataclass

from loomflow.budget.ledger.base import Ledger
from loomflow.kernel import extras
from loomflow.kernel.backends import dsn as dsns
from loomflow.kernel.config import ConfigError


@dataclass(frozen=True)
class LedgerOptions:
    """Backend knobs that come from settings (see loomflow.budget.service.Settings)."""

    retention_ms: int = 3_600_000
    max_users: int = 100_000
    idle_ttl_ms: int = 86_400_000
    max_kept_per_user: int = 1_000
    pool_size: int = 10
    migrate: bool = True  # False: no DDL at start, refuse a schema behind this release (Postgres)


def open_ledger(dsn: str, options: LedgerOptions | None = None) -> Ledger:
    """A ledger for ``dsn``. Network backends connect in ``start()``, never here."""
    opts = options or LedgerOptions()
    parsed = dsns.parse(dsn, "LOOMFLOW_BUDGET_DSN")
    scheme = parsed.scheme
    if scheme in ("", "memory"):
        from loomflow.budget.ledger.inprocess import InProcessLedger

        return InProcessLedger(
            max_users=opts.max_users,
            idle_ttl_ms=opts.idle_ttl_ms,
            retention_ms=opts.retention_ms,
            max_kept_per_user=opts.max_kept_per_user,
        )
    if parsed.is_redis:
        extras.require("redis", f"LOOMFLOW_BUDGET_DSN={scheme}://…")
        from loomflow.budget.ledger.redis import RedisLedger

        return RedisLedger(dsn, retention_ms=opts.retention_ms, pool_size=opts.pool_size)
    if parsed.is_postgres:
        extras.require("postgres", f"LOOMFLOW_BUDGET_DSN={scheme}://…")
        from loomflow.budget.ledger.postgres import PostgresLedger

        return PostgresLedger(dsn, pool_size=opts.pool_size, migrate=opts.migrate)
    raise ConfigError(f"budget dsn {parsed.redacted!r}: use memory://, redis://… or postgres://… (LOOMFLOW_BUDGET_DSN)")


__all__ = ["Ledger", "LedgerOptions", "open_ledger"]
