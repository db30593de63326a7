"""Hosts the BudgetService: settings, the ledger chosen by DSN, and the servicer."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from loomflow.budget.core import Budget, parse_limit_spec
from loomflow.budget.ledger import LedgerOptions, open_ledger
from loomflow.budget.models import Limit, LimitTarget
from loomflow.budget.pricing import PriceTable
from loomflow.budget.servicer import BudgetServicer
from loomflow.kernel.backends import migrations
from loomflow.kernel.config import ConfigError, option
from loomflow.kernel.hosting import HostedService, ServiceContext
from loomflow.v1 import budget_pb2, budget_pb2_grpc

SECTION = "budget"


@dataclass(frozen=True)
class Settings:
    """The Budget's options. Ledger defaults are LedgerOptions' own (declared once;
    tests/test_settings_defaults.py fails if the two ever disagree)."""

    dsn: str = option("", "ledger: empty or memory:// (in-process), redis://host:port/db, postgres://…")
    reservation_ttl_seconds: float = option(300.0, "how long a hold lives when Reserve sets no ttl_ms")
    retention_seconds: float = option(
        LedgerOptions.retention_ms / 1000,
        "how long settled reservations are kept so retried Reserve/Commit replay (in-process, Redis)",
    )
    warn_fraction: float = option(0.8, "soft warning once a limit is this used (0 disables warnings)")
    price_file: str = option("", "YAML/JSON price table merged over the built-in one (see docs/budget.md)")
    fallback_input_usd_per_mtok: float = option(15.0, "input price (USD per million tokens) of unknown models")
    fallback_output_usd_per_mtok: float = option(75.0, "output price (USD per million tokens) of unknown models")
    global_limits: str = option(
        "", "limits on all tenants together, e.g. cost_micros/monthly=500000000 (written at start when set)"
    )
    user_limits: str = option(
        "", "default per-user limits, e.g. total_tokens/daily=200000,cost_micros/monthly=5000000 (written at start)"
    )
    max_users: int = option(
        LedgerOptions.max_users, "in-process ledger: most tenants kept, least recently used evicted (0: no bound)"
    )
    user_idle_ttl_seconds: float = option(
        LedgerOptions.idle_ttl_ms / 1000, "in-process ledger: evict tenants idle this long (0: never)"
    )
    max_kept_reservations_per_user: int = option(
        LedgerOptions.max_kept_per_user, "in-process ledger: settled reservations kept per tenant"
    )
    pool_size: int = option(LedgerOptions.pool_size, "connections to Postgres or Redis")


def ledger_options(settings: Settings, *, migrate: bool = True) -> LedgerOptions:
    """The ledger's knobs from the settings (whose defaults are LedgerOptions' own)."""
    return LedgerOptions(
        retention_ms=int(settings.retention_seconds * 1000),
        max_users=settings.max_users,
        idle_ttl_ms=int(settings.user_idle_ttl_seconds * 1000),
        max_kept_per_user=settings.max_kept_reservations_per_user,
        pool_size=settings.pool_size,
        migrate=migrate,
    )


def build_budget(settings: Settings, *, migrate: bool = True) -> Budget:
    if not 0 <= settings.warn_fraction <= 1:
        raise ConfigError(f"LOOMFLOW_BUDGET_WARN_FRACTION={settings.warn_fraction}: expected 0..1")
    if settings.reservation_ttl_seconds <= 0:
        raise ConfigError("LOOMFLOW_BUDGET_RESERVATION_TTL_SECONDS must be positive")
    configured: dict[LimitTarget, list[Limit]] = {}
    if settings.global_limits.strip():
        configured[LimitTarget.GLOBAL] = parse_limit_spec(settings.global_limits, "LOOMFLOW_BUDGET_GLOBAL_LIMITS")
    if settings.user_limits.strip():
        configured[LimitTarget.DEFAULT_USER] = parse_limit_spec(settings.user_limits, "LOOMFLOW_BUDGET_USER_LIMITS")
    ledger = open_ledger(settings.dsn, ledger_options(settings, migrate=migrate))
    prices = PriceTable.load(
        settings.price_file, settings.fallback_input_usd_per_mtok, settings.fallback_output_usd_per_mtok
    )
    return Budget(
        ledger,
        prices,
        default_ttl_ms=int(settings.reservation_ttl_seconds * 1000),
        warn_fraction=settings.warn_fraction,
        configured_limits=configured,
    )


def build(ctx: ServiceContext) -> HostedService:
    budget = build_budget(ctx.section(SECTION, Settings), migrate=ctx.server.migrate)
    servicer = BudgetServicer(budget)

    def register(server: grpc.aio.Server) -> None:
        budget_pb2_grpc.add_BudgetServiceServicer_to_server(servicer, server)

    return HostedService(
        name=SECTION,
        full_name=budget_pb2.DESCRIPTOR.services_by_name["BudgetService"].full_name,
        register=register,
        on_start=[budget.start],
        on_stop=[budget.close],
    )


async def _migrate(settings: Settings) -> None:
    """`loomflow migrate`: unlike the ledger's start, fails when it cannot reach Postgres."""
    from loomflow.budget.ledger.postgres import PostgresLedger  # the postgres extra

    ledger = PostgresLedger(settings.dsn, pool_size=1)
    try:
        await ledger.migrate()
    finally:
        await ledger.close()


MIGRATIONS = migrations.Declared("dsn", _migrate)
