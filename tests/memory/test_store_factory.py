"""Choosing a backend by DSN (LOOMFLOW_MEMORY_DSN), and the embedded default."""

from __future__ import annotations

from pathlib import Path

import pytest

from loomflow.kernel.config import ConfigError
from loomflow.memory.models import EpisodeDraft, now_micros
from loomflow.memory.store import StoreOptions, open_store
from loomflow.memory.store.chroma import ChromaStore
from loomflow.memory.store.inmemory import InMemoryStore
from loomflow.memory.store.postgres import PostgresStore
from loomflow.memory.store.redis import RedisStore
from loomflow.memory.store.sqlite import SQLiteStore


@pytest.mark.parametrize(
    ("dsn", "kind"),
    [
        ("memory://", InMemoryStore),
        ("sqlite:///var/lib/memory.db", SQLiteStore),
        ("postgres://u@localhost/db", PostgresStore),
        ("postgresql://u@localhost/db", PostgresStore),
        ("redis://localhost:6379/0", RedisStore),
        ("rediss://localhost:6380/0", RedisStore),
        ("chroma:///var/lib/chroma", ChromaStore),
        ("chroma://", ChromaStore),
    ],
)
def test_each_scheme_selects_its_backend(dsn: str, kind: type, tmp_path: Path) -> None:
    assert isinstance(open_store(dsn, tmp_path), kind)


async def test_empty_dsn_is_a_durable_sqlite_file_under_the_data_dir(tmp_path: Path) -> None:
    store = open_store("", tmp_path)
    await store.start()
    stored = await store.remember("alice", EpisodeDraft("", "kept on disk", ""), now_micros())
    await store.close()
    assert (tmp_path / "memory.db").exists()
    reopened = open_store("", tmp_path)
    await reopened.start()
    try:
        assert await reopened.get_episode("alice", stored.id) == stored
    finally:
        await reopened.close()


@pytest.mark.parametrize(
    ("dsn", "options"),
    [
        ("mysql://localhost/db", StoreOptions()),
        ("sqlite://", StoreOptions()),
        ("", StoreOptions(sqlite_synchronous="sometimes")),
        ("", StoreOptions(sqlite_mmap_bytes=-1)),
    ],
    ids=["unknown_scheme", "sqlite_without_path", "bad_synchronous", "negative_mmap"],
)
def test_unusable_configuration_is_a_config_error_naming_the_variable(
    dsn: str, options: StoreOptions, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="LOOMFLOW_MEMORY_"):
        open_store(dsn, tmp_path, options)


def _mapped(path: Path) -> bool:
    return any(line.rstrip().endswith(str(path)) for line in Path("/proc/self/maps").read_text().splitlines())


@pytest.mark.parametrize(("mmap_bytes", "mapped"), [(StoreOptions().sqlite_mmap_bytes, True), (0, False)])
async def test_sqlite_reads_through_a_memory_map_unless_turned_off(
    mmap_bytes: int, mapped: bool, tmp_path: Path
) -> None:
    store = open_store("", tmp_path, StoreOptions(sqlite_mmap_bytes=mmap_bytes))
    await store.start()
    try:
        stored = await store.remember("alice", EpisodeDraft("", "read back through the map", ""), now_micros())
        assert await store.get_episode("alice", stored.id) == stored
        assert _mapped(tmp_path / "memory.db") is mapped
    finally:
        await store.close()
    assert not _mapped(tmp_path / "memory.db")
