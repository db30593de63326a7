"""Hosts the PolicyService: settings, the store chosen by DSN, the policy file, the servicer."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from loomflow import retention
from loomflow.kernel.backends import migrations
from loomflow.kernel.config import ConfigError, option
from loomflow.kernel.hosting import HostedService, ServiceContext
from loomflow.policy.approvals import Approvals
from loomflow.policy.book import PolicyBook
from loomflow.policy.checks import Checker
from loomflow.policy.policy_file import PolicyFile, load_policy_file
from loomflow.policy.servicer import PolicyServicer
from loomflow.policy.store import POOL_SIZE, PolicyStore, open_store
from loomflow.v1 import policy_pb2, policy_pb2_grpc

SECTION = "policy"


@dataclass(frozen=True)
class Settings:
    dsn: str = option("", "store: empty (sqlite under data_dir), sqlite:///path, postgres://…")
    file: str = option("", "YAML policy file applied at start (validated; see docs/policy.md)")
    approval_timeout_seconds: float = option(300.0, "how long an approval stays pending when timeout_ms is 0")
    remember_ttl_seconds: float = option(86_400.0, "how long a remembered answer lasts (the longest run)")
    expiry_sweep_seconds: float = option(1.0, "how often approvals past their deadline are expired and announced")
    refresh_seconds: float = option(1.0, "how often policy changes made by other processes are picked up")
    max_cached_policies: int = option(100_000, "tenants whose policy is kept compiled in memory (LRU)")
    watch_queue_size: int = option(1000, "approvals a slow watcher may fall behind before its stream is ended")
    max_pending_approvals: int = option(
        100, "approvals one tenant may have pending at once; RequestApproval beyond is RESOURCE_EXHAUSTED"
    )
    pool_size: int = option(POOL_SIZE, "connections to Postgres")


def _check(settings: Settings) -> None:
    for name in ("approval_timeout_seconds", "remember_ttl_seconds"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"LOOMFLOW_POLICY_{name.upper()} must be positive")
    for name in ("max_cached_policies", "watch_queue_size", "pool_size", "max_pending_approvals"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"LOOMFLOW_POLICY_{name.upper()} must be at least 1")


def approval_retention(ctx: ServiceContext, store: PolicyStore) -> retention.Sweeper:
    """The sweeper that deletes settled approvals (and their arguments) past retention."""
    settings = ctx.section(retention.SECTION, retention.Settings)
    retention.check(settings)
    kind = retention.SweptKind(
        "policy_approvals",
        retention.retention_of(settings, "policy_approvals"),
        store.tenants_with_settled_approvals_before,
        store.delete_settled_approvals_before,
    )
    return retention.Sweeper("policy", [kind], settings)


def build(ctx: ServiceContext) -> HostedService:
    settings = ctx.section(SECTION, Settings)
    _check(settings)
    # Read and validate the file now, so a bad file stops the server before it binds.
    policy_file: PolicyFile | None = load_policy_file(settings.file) if settings.file else None
    store = open_store(settings.dsn, ctx.server.data_dir, pool_size=settings.pool_size, migrate=ctx.server.migrate)
    book = PolicyBook(store, max_cached=settings.max_cached_policies, refresh_seconds=settings.refresh_seconds)
    approvals = Approvals(
        store,
        default_timeout_ms=int(settings.approval_timeout_seconds * 1000),
        remember_ttl_ms=int(settings.remember_ttl_seconds * 1000),
        sweep_seconds=settings.expiry_sweep_seconds,
        queue_size=settings.watch_queue_size,
        max_pending_per_tenant=settings.max_pending_approvals,
    )
    servicer = PolicyServicer(book, approvals, Checker(book, approvals))
    sweeper = approval_retention(ctx, store)

    async def start() -> None:
        await store.start()
        if policy_file is not None:
            await book.apply_file(policy_file.by_key())
        await book.start()
        await approvals.start()
        await sweeper.start()

    async def end_watches() -> None:
        approvals.broadcaster.close()  # open WatchApprovals streams end cleanly; watchers reconnect elsewhere

    async def stop() -> None:
        await sweeper.stop()
        await approvals.close()
        await book.close()
        await store.close()

    def register(server: grpc.aio.Server) -> None:
        policy_pb2_grpc.add_PolicyServiceServicer_to_server(servicer, server)

    return HostedService(
        name=SECTION,
        full_name=policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name,
        register=register,
        # A tenant may answer its own approvals (where the rule allows) with its user credential.
        end_user_rpcs=frozenset({"GetApproval", "ResolveApproval"}),
        all_tenants_rpcs=frozenset({"WatchApprovals", "ListApprovals"}),
        on_start=[start],
        on_drain=[end_watches],
        on_stop=[stop],
    )


async def _migrate(settings: Settings) -> None:
    """`loomflow migrate`: the store's own start-up, which applies the migrations."""
    from loomflow.policy.store.postgres import PostgresStore  # the postgres extra

    store = PostgresStore(settings.dsn, pool_size=2)
    await store.start()
    await store.close()


MIGRATIONS = migrations.Declared("dsn", _migrate)
