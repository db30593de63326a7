"""Chroma specifics: our embeddings only (no model), one collection per tenant, durable under a path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chromadb.utils.embedding_functions as chroma_functions
import pytest

from loomflow.memory.models import EpisodeDraft, ForgetScope, RecallQuery, now_micros
from loomflow.memory.store.chroma import ChromaStore, collection_name


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("Chroma's default (downloaded) embedding model must never be used")


async def test_every_operation_uses_our_embeddings_never_chromas_default_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chroma_functions.DefaultEmbeddingFunction, "__call__", _refuse)
    monkeypatch.setattr(chroma_functions.ONNXMiniLM_L6_V2, "__call__", _refuse)
    store = ChromaStore(str(tmp_path / "chroma"))
    await store.start()
    try:
        stored = await store.remember("alice", EpisodeDraft("", "chroma keeps our vectors", ""), now_micros())
        hits = await store.recall("alice", RecallQuery(text="our vectors", limit=3))
        assert [h.episode.id for h in hits] == [stored.id]
        collection = store._collection("alice", store._stored_name("alice"), create=False)
        assert collection.configuration["embedding_function"].name() == "loomflow-feature-hashing"
        assert collection.configuration["hnsw"]["space"] == "cosine"
        await store.forget("alice", ForgetScope(), now_micros())
    finally:
        await store.close()


async def test_each_tenant_gets_its_own_collection_named_by_hash(tmp_path: Path) -> None:
    store = ChromaStore(str(tmp_path / "chroma"))
    await store.start()
    try:
        tenants = ["alice", "bob:with:colons", "*"]
        for tenant in tenants:
            await store.remember(tenant, EpisodeDraft("", f"hello from {tenant}", ""), now_micros())
        collections = {c.name: c.metadata for c in store._client.list_collections()}
        assert collections == {collection_name(t): {"tenant": t, "embedder": "hashing-256"} for t in tenants}
    finally:
        await store.close()


async def test_episodes_blocks_and_facts_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "chroma")
    first = ChromaStore(path)
    await first.start()
    stored = await first.remember("alice", EpisodeDraft("s1", "remember me", "ok"), now_micros())
    await first.close()

    second = ChromaStore(path)
    await second.start()
    try:
        assert await second.get_episode("alice", stored.id) == stored
        hits = await second.recall("alice", RecallQuery(text="remember", limit=1))
        assert [h.episode.id for h in hits] == [stored.id]
        again = await second.remember("alice", EpisodeDraft("s1", "and me", ""), now_micros())
        assert again.seq == stored.seq + 1
    finally:
        await second.close()
