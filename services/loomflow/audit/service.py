"""Hosts the AuditService: settings, keys, the sink chosen by DSN, and the lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loomflow import retention
from loomflow.audit.core import AuditLog
from loomflow.audit.keys import AuditKeys, load_keys
from loomflow.audit.servicer import AuditServicer
from loomflow.audit.sink import default_dsn, file_folder, open_sink
from loomflow.kernel.backends import migrations
from loomflow.kernel.config import ConfigError, option
from loomflow.kernel.hosting import HostedService, ServiceContext
from loomflow.v1 import audit_pb2, audit_pb2_grpc

SECTION = "audit"


@dataclass(frozen=True)
class Settings:
    dsn: str = option("", "audit log: file:///folder (JSONL) or postgres://…; empty: <data_dir>/audit")
    hmac_key: str = option("", "secret (≥ 32 characters) that links every chain with HMAC-SHA256", secret=True)
    signing_key: str = option(
        "", "Ed25519 private key that signs checkpoints: PEM, or the 32-byte seed as hex or base64", secret=True
    )
    payload_key: str = option(
        "", "master key (32 bytes as hex or base64) that wraps the per-user payload keys", secret=True
    )
    checkpoint_interval: float = option(60.0, "seconds between automatic checkpoints (0: only on demand)")
    max_batch: int = option(1024, "most appends one group commit makes durable together")


def build_log(ctx: ServiceContext) -> AuditLog:
    """The configured audit log, not started yet; raises ConfigError for bad settings or keys."""
    settings = ctx.section(SECTION, Settings)
    if settings.max_batch < 1:
        raise ConfigError(f"LOOMFLOW_AUDIT_MAX_BATCH={settings.max_batch}: must be at least 1")
    if settings.checkpoint_interval < 0:
        raise ConfigError(f"LOOMFLOW_AUDIT_CHECKPOINT_INTERVAL={settings.checkpoint_interval}: must be ≥ 0")
    keys = load_keys(settings.hmac_key, settings.signing_key, settings.payload_key, insecure=ctx.server.insecure)
    sink = open_sink(settings.dsn or default_dsn(ctx.server.data_dir), migrate=ctx.server.migrate)
    return AuditLog(sink, keys, max_batch=settings.max_batch, checkpoint_interval=settings.checkpoint_interval)


PUBLIC_KEY_FILE = "public-key.pem"


def file_log_folder(ctx: ServiceContext) -> Path | None:
    """The folder of the configured file log, as the operator wrote it (relative stays relative); None for Postgres."""
    dsn = ctx.section(SECTION, Settings).dsn
    if not dsn:
        return Path(ctx.server.data_dir) / "audit"
    return file_folder(dsn) if dsn.startswith("file:") or "://" not in dsn else None


def write_public_key(folder: Path, signing_key: Ed25519PrivateKey) -> Path:
    """Writes the checkpoint signing key's public half (PEM) beside a file log, for offline verification."""
    pem = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PUBLIC_KEY_FILE
    path.write_bytes(pem)
    return path


def _keep_public_key(folder: Path, keys: AuditKeys) -> Callable[[], Awaitable[None]]:
    """Development mode keeps the checkpoint key beside the log, so the log verifies offline against it."""

    async def write() -> None:
        await asyncio.to_thread(write_public_key, folder, keys.signing_key)

    return write


def payload_retention(ctx: ServiceContext, audit_log: AuditLog) -> retention.Sweeper:
    """The sweeper that crypto-shreds payloads past retention (loomflow/retention.py): it destroys
    each tenant's day keys whose whole UTC day is older than the tenant's limit."""
    settings = ctx.section(retention.SECTION, retention.Settings)
    retention.check(settings)

    async def tenants_before(cutoff_ms: int, after: str, limit: int) -> list[str]:
        return await audit_log.tenants_with_payloads_before(cutoff_ms * 1000, after, limit)

    async def shred_before(tenant: str, cutoff_ms: int, limit: int) -> int:
        return await audit_log.shred_payloads_before(tenant, cutoff_ms * 1000, limit)

    kept = retention.retention_of(settings, "audit_payloads")
    return retention.Sweeper(
        "audit", [retention.SweptKind("audit_payloads", kept, tenants_before, shred_before)], settings
    )


def build(ctx: ServiceContext) -> HostedService:
    audit_log = build_log(ctx)
    servicer = AuditServicer(audit_log)
    sweeper = payload_retention(ctx, audit_log)
    # The sweeper starts after the log (it writes through the log's writer) and stops before it.
    on_start: list[Callable[[], Awaitable[None]]] = [audit_log.start, sweeper.start]
    folder = file_log_folder(ctx)
    if ctx.server.insecure and folder is not None:
        on_start.append(_keep_public_key(folder, audit_log.keys))

    def register(server: grpc.aio.Server) -> None:
        audit_pb2_grpc.add_AuditServiceServicer_to_server(servicer, server)

    return HostedService(
        name=SECTION,
        full_name=audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
        register=register,
        all_tenants_rpcs=frozenset({"Query", "Verify", "Usage", "ListTenants"}),
        on_start=on_start,
        on_stop=[sweeper.stop, audit_log.stop],
    )


async def _migrate(settings: Settings) -> None:
    """`loomflow migrate`: the sink's own opening, which applies the migrations."""
    from loomflow.audit.sink.postgres import PostgresSink  # the postgres extra

    sink = PostgresSink(settings.dsn, pool_size=1)
    await sink.open()
    await sink.close()


MIGRATIONS = migrations.Declared("dsn", _migrate)
