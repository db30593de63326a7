"""Hosts the MemoryService: settings, the backend chosen by DSN, and the servicer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import grpc

from loomflow import retention
from loomflow.kernel.backends import migrations
from loomflow.kernel.config import ConfigError, option
from loomflow.kernel.hosting import HostedService, ServiceContext
from loomflow.memory.recall.factory import CHOICES, EmbedderOptions, open_embedder
from loomflow.memory.servicer import MemoryServicer
from loomflow.memory.store import StoreOptions, open_store
from loomflow.memory.store.base import MemoryStore
from loomflow.v1 import memory_pb2, memory_pb2_grpc

SECTION = "memory"


@dataclass(frozen=True)
class Settings:
    """The Memory's options. Backend and embedder defaults are StoreOptions' and EmbedderOptions' own
    (declared once; tests/test_settings_defaults.py fails if the two ever disagree)."""

    dsn: str = option(
        "",
        "backend: memory://, sqlite:///path, postgres://…, redis://…, chroma:///path "
        "(empty: sqlite under --data-dir/memory.db)",
    )
    max_users: int = option(
        StoreOptions.max_users, "memory:// backend: most tenants kept, least recently used evicted (0: no bound)"
    )
    user_idle_ttl_seconds: float = option(
        StoreOptions.user_idle_ttl_seconds, "memory:// backend: drop a tenant idle this many seconds (0: never)"
    )
    recall_cache_episodes: int = option(
        StoreOptions.recall_cache_episodes,
        "sqlite/postgres/redis/chroma: episodes of per-tenant recall indexes cached in process (LRU)",
    )
    max_block_bytes_per_user: int = option(
        16 * 1024 * 1024,
        "UTF-8 bytes all of one tenant's working blocks may hold; PutBlock beyond is RESOURCE_EXHAUSTED (0: no cap)",
    )
    pool_size: int = option(StoreOptions.pool_size, "postgres: connections in the asyncpg pool")
    sqlite_synchronous: str = option(
        StoreOptions.sqlite_synchronous,
        "sqlite: normal (a commit survives a process crash) or full (fsync per commit: power loss too)",
    )
    sqlite_mmap_bytes: int = option(
        StoreOptions.sqlite_mmap_bytes,
        "sqlite: bytes of the file read through a memory map (page cache, not heap; 0: plain reads)",
    )
    embedder: str = option(
        EmbedderOptions.kind,
        f"recall embeddings: {', '.join(CHOICES)} (wordllama: packaged model, no download; hashing: no model; "
        "openai: an OpenAI-compatible /v1/embeddings endpoint, see --memory-embedder-*)",
    )
    embedder_base_url: str = option(
        EmbedderOptions.base_url, "openai embedder: base URL, e.g. http://localhost:8080/v1 (vLLM, TEI, Ollama)"
    )
    embedder_api_key: str = option(EmbedderOptions.api_key, "openai embedder: API key (empty: none)", secret=True)
    embedder_model: str = option(EmbedderOptions.model, "openai embedder: model name sent with each request")
    embedder_dim: int = option(
        EmbedderOptions.dim, "openai embedder: vector dimension (0: ask the endpoint once at start)"
    )
    embedder_batch_size: int = option(EmbedderOptions.batch_size, "openai embedder: texts per request at most")
    embedder_attempts: int = option(
        EmbedderOptions.attempts, "openai embedder: tries per request (429/5xx/connection errors, with backoff)"
    )
    embedder_timeout_ms: int = option(
        round(EmbedderOptions.timeout_s * 1000), "openai embedder: HTTP timeout of one request"
    )


def embedder_options(settings: Settings) -> EmbedderOptions:
    return EmbedderOptions(
        kind=settings.embedder,
        base_url=settings.embedder_base_url,
        api_key=settings.embedder_api_key,
        model=settings.embedder_model,
        dim=settings.embedder_dim,
        batch_size=settings.embedder_batch_size,
        attempts=settings.embedder_attempts,
        timeout_s=settings.embedder_timeout_ms / 1000.0,
    )


def store_options(settings: Settings) -> StoreOptions:
    return StoreOptions(
        max_users=settings.max_users,
        user_idle_ttl_seconds=settings.user_idle_ttl_seconds,
        recall_cache_episodes=settings.recall_cache_episodes,
        pool_size=settings.pool_size,
        sqlite_synchronous=settings.sqlite_synchronous,
        sqlite_mmap_bytes=settings.sqlite_mmap_bytes,
    )


def episode_retention(ctx: ServiceContext, store: MemoryStore) -> retention.Sweeper:
    """The sweeper that deletes episodes past retention (loomflow/retention.py)."""
    settings = ctx.section(retention.SECTION, retention.Settings)
    retention.check(settings)

    async def tenants_before(cutoff_ms: int, after: str, limit: int) -> list[str]:
        return await store.tenants_with_episodes_before(cutoff_ms * 1000, after, limit)

    async def delete_before(tenant: str, cutoff_ms: int, limit: int) -> int:
        return await store.delete_episodes_before(tenant, cutoff_ms * 1000, limit)

    kept = retention.retention_of(settings, "memory_episodes")
    return retention.Sweeper(
        "memory", [retention.SweptKind("memory_episodes", kept, tenants_before, delete_before)], settings
    )


def build(ctx: ServiceContext) -> HostedService:
    settings = ctx.section(SECTION, Settings)
    if settings.max_block_bytes_per_user < 0:
        raise ConfigError("LOOMFLOW_MEMORY_MAX_BLOCK_BYTES_PER_USER must be >= 0 (0: no cap)")
    embedder = open_embedder(embedder_options(settings))
    options = dataclasses.replace(store_options(settings), migrate=ctx.server.migrate)
    store = open_store(settings.dsn, ctx.server.data_dir, options, embedder)
    # Recall answers and list pages must fit one message; each Recall names the embedder, so the
    # Agent applies its tuning.
    servicer = MemoryServicer(
        store,
        ctx.server.max_message_bytes,
        max_block_bytes_per_user=settings.max_block_bytes_per_user,
        embedder=embedder,
    )

    sweeper = episode_retention(ctx, store)

    def register(server: grpc.aio.Server) -> None:
        memory_pb2_grpc.add_MemoryServiceServicer_to_server(servicer, server)

    return HostedService(
        name=SECTION,
        full_name=memory_pb2.DESCRIPTOR.services_by_name["MemoryService"].full_name,
        register=register,
        on_start=[embedder.start, store.start, sweeper.start],  # the store needs the embedder's dimension
        on_stop=[sweeper.stop, store.close, embedder.close],
    )


async def _migrate(settings: Settings) -> None:
    """`loomflow migrate`: the store's own start-up with migrations on (and the pgvector column when the
    extension can be created)."""
    options = dataclasses.replace(store_options(settings), migrate=True)
    store = open_store(settings.dsn, "", options, open_embedder(embedder_options(settings)))
    await store.start()
    await store.close()


MIGRATIONS = migrations.Declared("dsn", _migrate)
