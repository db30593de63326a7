"""Hosts the MemoryService: settings, the backend chosen by DSN, and the servicer."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from loomflow.kernel.config import ConfigError, option
from loomflow.kernel.hosting import HostedService, ServiceContext
from loomflow.memory.servicer import MemoryServicer
from loomflow.memory.store import SQLITE_MMAP_BYTES, StoreOptions, open_store
from loomflow.v1 import memory_pb2, memory_pb2_grpc

SECTION = "memory"


@dataclass(frozen=True)
class Settings:
    dsn: str = option(
        "",
        "backend: memory://, sqlite:///path, postgres://…, redis://…, chroma:///path "
        "(empty: sqlite under --data-dir/memory.db)",
    )
    max_users: int = option(100_000, "memory:// backend: most tenants kept, least recently used evicted (0: no bound)")
    user_idle_ttl_seconds: float = option(
        86_400.0, "memory:// backend: drop a tenant idle this many seconds (0: never)"
    )
    recall_cache_episodes: int = option(
        2_000_000, "sqlite/postgres/redis/chroma: episodes of per-tenant recall indexes cached in process (LRU)"
    )
    max_block_bytes_per_user: int = option(
        16 * 1024 * 1024,
        "UTF-8 bytes all of one tenant's working blocks may hold; PutBlock beyond is RESOURCE_EXHAUSTED (0: no cap)",
    )
    pool_size: int = option(10, "postgres: connections in the asyncpg pool")
    sqlite_synchronous: str = option(
        "normal", "sqlite: normal (a commit survives a process crash) or full (fsync per commit: power loss too)"
    )
    sqlite_mmap_bytes: int = option(
        SQLITE_MMAP_BYTES, "sqlite: bytes of the file read through a memory map (page cache, not heap; 0: plain reads)"
    )


def build(ctx: ServiceContext) -> HostedService:
    settings = ctx.section(SECTION, Settings)
    store = open_store(
        settings.dsn,
        ctx.server.data_dir,
        StoreOptions(
            max_users=settings.max_users,
            user_idle_ttl_seconds=settings.user_idle_ttl_seconds,
            recall_cache_episodes=settings.recall_cache_episodes,
            pool_size=settings.pool_size,
            sqlite_synchronous=settings.sqlite_synchronous,
            sqlite_mmap_bytes=settings.sqlite_mmap_bytes,
        ),
    )
    if settings.max_block_bytes_per_user < 0:
        raise ConfigError("LOOMFLOW_MEMORY_MAX_BLOCK_BYTES_PER_USER must be >= 0 (0: no cap)")
    # Recall answers and list pages must fit one message.
    servicer = MemoryServicer(store, ctx.server.max_message_bytes, settings.max_block_bytes_per_user)

    def register(server: grpc.aio.Server) -> None:
        memory_pb2_grpc.add_MemoryServiceServicer_to_server(servicer, server)

    return HostedService(
        name=SECTION,
        full_name=memory_pb2.DESCRIPTOR.services_by_name["MemoryService"].full_name,
        register=register,
        on_start=[store.start],
        on_stop=[store.close],
    )
