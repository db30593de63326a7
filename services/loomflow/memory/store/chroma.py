"""Chroma backend: episodes in embedded Chroma with our own embeddings; the rest in a SQLite file beside it.

Each tenant's episodes live in their own Chroma collection (named by the
SHA-256 of the tenant key, which the collection's metadata also records), so
no query ever filters a shared collection by user. Vectors are always computed
by our embedder and passed to Chroma explicitly; the collections are created
with our embedding function too, so Chroma never loads or downloads a model.
Recall asks the tenant's collection (HNSW, cosine) for its nearest episodes
and fuses them with BM25 from the in-process per-tenant index.

Working blocks, bi-temporal facts, Forget tombstones and the per-tenant
(epoch, seq) counters need transactions and range predicates that Chroma does
not offer, so they live in ``loomflow-memory.db`` (the SQLite backend) in the
same folder. Chroma's embedded client is single-process: a per-tenant lock
orders each Remember against each Forget of the same tenant, so a racing write
can never land in Chroma after the Forget that should have removed it.

``chroma:///path`` persists under the folder; ``chroma://`` keeps everything in
memory for the life of the process (the SQLite file then goes to a temporary
folder removed at close).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tempfile
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import chromadb
import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.config import Settings
from chromadb.errors import NotFoundError

from loomflow.kernel.errors import NotFound, Unavailable
from loomflow.memory import forgetting
from loomflow.memory.episodes import stamp
from loomflow.memory.models import (
    AssertionResult,
    Block,
    BlockWrite,
    Episode,
    EpisodeDraft,
    ExportRecord,
    Fact,
    FactAssertion,
    FactQuery,
    ForgetResult,
    ForgetScope,
    Micros,
    RecallHit,
    RecallQuery,
    SessionPage,
)
from loomflow.memory.recall.cache import IndexCache
from loomflow.memory.recall.embedding import Embedder, HashingEmbedder, Vector
from loomflow.memory.recall.engine import CachedRecall
from loomflow.memory.recall.index import IndexedDoc
from loomflow.memory.store.sqlite import SQLiteStore

T = TypeVar("T")

SIDECAR = "loomflow-memory.db"
COLLECTIONS_KEPT_OPEN = 4096


class OurEmbeddings(EmbeddingFunction[Documents]):
    """Chroma's view of our embedder, so a collection never falls back to Chroma's default model."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self._embedder = embedder or HashingEmbedder()

    def __call__(self, input: Documents) -> Embeddings:
        return [self._embedder.embed(text) for text in input]

    @staticmethod
    def name() -> str:
        return "loomflow-feature-hashing"

    def get_config(self) -> dict[str, Any]:
        return {"dim": self._embedder.dim}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> OurEmbeddings:
        return OurEmbeddings(HashingEmbedder(int(config.get("dim", 256))))

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"


def collection_name(tenant: str) -> str:
    return "loomflow-memory-" + hashlib.sha256(tenant.encode()).hexdigest()


def _episode_from(tenant: str, metadata: Mapping[str, Any], document: str) -> Episode:
    split = int(metadata["input_len"])
    return Episode(
        tenant=tenant,
        id=str(metadata["episode_id"]),
        seq=int(metadata["seq"]),
        session_id=str(metadata["session_id"]),
        input=document[:split],
        output=document[split + 1 :],
        metadata=json.loads(str(metadata["metadata"])),
        run_id=str(metadata["run_id"]),
        created_at=int(metadata["created_at"]),
    )


class ChromaStore:
    def __init__(self, path: str | None, embedder: Embedder | None = None, cache_episodes: int = 2_000_000) -> None:
        self._path = path
        self._embedder = embedder or HashingEmbedder()
        self._functions = OurEmbeddings(self._embedder)
        # chroma:// (in memory): the SQLite side goes to a folder of its own, created by start, removed by close.
        scratch = Path(tempfile.gettempdir()) / f"loomflow-chroma-{uuid.uuid4().hex}"
        self._scratch = None if path else scratch
        self._relational = SQLiteStore(Path(path or scratch) / SIDECAR, self._embedder, 0)
        self._threads = ThreadPoolExecutor(2, thread_name_prefix="memory-chroma")
        self._client: Any = None
        self._collections: OrderedDict[str, Any] = OrderedDict()
        self._collections_lock = threading.Lock()  # the map is used from the Chroma threads
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._cache = IndexCache(cache_episodes)
        self._recall = CachedRecall(self, self._embedder, self._cache, nearest=self)

    @property
    def recall_cache(self) -> IndexCache:
        return self._cache

    async def start(self) -> None:
        settings = Settings(anonymized_telemetry=False, allow_reset=False)
        try:
            if self._path:
                path = Path(self._path)
                self._client = await self._run(lambda: chromadb.PersistentClient(path=path, settings=settings))
            else:
                self._client = await self._run(lambda: chromadb.EphemeralClient(settings=settings))
        except Exception as exc:  # chromadb raises plain exceptions for unusable folders
            raise Unavailable(f"cannot open chroma at {self._path or '(memory)'}: {exc}") from exc
        await self._relational.start()

    async def close(self) -> None:
        await self._relational.close()
        self._collections.clear()
        self._threads.shutdown(wait=True)
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)

    # -- plumbing ----------------------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn)

    def _lock(self, tenant: str) -> asyncio.Lock:
        lock = self._locks.get(tenant)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[tenant] = lock
        return lock

    def _collection(self, tenant: str, create: bool) -> Any:
        """The tenant's collection (None when it has none and ``create`` is False). Runs in a Chroma thread."""
        with self._collections_lock:
            found = self._collections.get(tenant)
            if found is not None:
                self._collections.move_to_end(tenant)
                return found
        name = collection_name(tenant)
        if create:
            found = self._client.get_or_create_collection(
                name,
                embedding_function=self._functions,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"tenant": tenant},
            )
        else:
            try:
                found = self._client.get_collection(name, embedding_function=self._functions)
            except NotFoundError:
                return None
        if (found.metadata or {}).get("tenant") != tenant:
            raise RuntimeError(f"chroma collection {name} belongs to another tenant")
        with self._collections_lock:
            self._collections[tenant] = found
            while len(self._collections) > COLLECTIONS_KEPT_OPEN:
                self._collections.popitem(last=False)
        return found

    async def _get(self, tenant: str, **query: Any) -> list[Episode]:
        def run() -> list[Episode]:
            collection = self._collection(tenant, create=False)
            if collection is None:
                return []
            found = collection.get(include=["metadatas", "documents"], **query)
            return [_episode_from(tenant, m, d) for m, d in zip(found["metadatas"], found["documents"], strict=True)]

        return await self._run(run)

    # -- episodes ----------------------------------------------------------

    async def remember(self, tenant: str, draft: EpisodeDraft, at: Micros) -> Episode:
        return (await self.remember_many(tenant, [draft], at))[0]

    async def remember_many(self, tenant: str, drafts: Sequence[EpisodeDraft], at: Micros) -> list[Episode]:
        if not drafts:
            return []
        vectors = [self._embedder.embed(d.text) for d in drafts]
        async with self._lock(tenant):
            first = await self._relational.reserve_episode_seqs(tenant, drafts, at)
            stored = stamp(tenant, drafts, first, at)
            metadatas = [
                {
                    "episode_id": e.id,
                    "seq": e.seq,
                    "session_id": e.session_id,
                    "input_len": len(e.input),
                    "metadata": json.dumps(dict(e.metadata), separators=(",", ":")),
                    "run_id": e.run_id,
                    "created_at": at,
                }
                for e in stored
            ]
            await self._run(
                lambda: self._collection(tenant, create=True).add(
                    ids=[str(e.seq) for e in stored],
                    embeddings=vectors,
                    documents=[e.text for e in stored],
                    metadatas=metadatas,
                )
            )
        return stored

    async def recall(self, tenant: str, query: RecallQuery) -> list[RecallHit]:
        return await self._recall.recall(tenant, query)

    async def list_episodes(self, tenant: str, page: SessionPage) -> list[Episode]:
        return await self._recall.list_session(tenant, page)

    async def probe(self, tenant: str) -> tuple[int, int]:
        return await self._relational.probe(tenant)

    async def load(self, tenant: str, after_seq: int) -> list[IndexedDoc]:
        episodes = await self._get(tenant, where={"seq": {"$gt": after_seq}})
        return [IndexedDoc(e.seq, e.session_id, e.text) for e in sorted(episodes, key=lambda e: e.seq)]

    async def probe_and_fetch(self, tenant: str, seqs: Sequence[int]) -> tuple[int, int, Mapping[int, Episode]]:
        epoch, top_seq = await self._relational.probe(tenant)
        records = {e.seq: e for e in await self._get(tenant, ids=[str(s) for s in seqs])} if seqs else {}
        return epoch, top_seq, records

    async def nearest(self, tenant: str, vector: Vector, session_id: str | None, count: int) -> Mapping[int, float]:
        def run() -> dict[int, float]:
            collection = self._collection(tenant, create=False)
            size = 0 if collection is None else collection.count()
            if size == 0:
                return {}
            where = None if session_id is None else {"session_id": session_id}
            found = collection.query(
                query_embeddings=[np.asarray(vector, dtype=np.float32)],
                n_results=min(count, size),
                where=where,
                include=["distances"],
            )
            return {int(i): 1.0 - float(d) for i, d in zip(found["ids"][0], found["distances"][0], strict=True)}

        return await self._run(run)

    async def get_episode(self, tenant: str, episode_id: str) -> Episode:
        found = await self._get(tenant, where={"episode_id": episode_id})
        if not found:
            raise NotFound(f"episode {episode_id!r} not found")
        return found[0]

    # -- blocks and facts: the SQLite side -----------------------------------------

    async def put_block(self, tenant: str, write: BlockWrite, at: Micros) -> Block:
        return await self._relational.put_block(tenant, write, at)

    async def get_block(self, tenant: str, session_id: str, label: str) -> Block:
        return await self._relational.get_block(tenant, session_id, label)

    async def list_blocks(self, tenant: str, session_id: str | None) -> list[Block]:
        return await self._relational.list_blocks(tenant, session_id)

    async def delete_block(self, tenant: str, session_id: str, label: str, expected_version: int | None) -> int:
        return await self._relational.delete_block(tenant, session_id, label, expected_version)

    async def assert_fact(self, tenant: str, assertion: FactAssertion, at: Micros) -> AssertionResult:
        return await self._relational.assert_fact(tenant, assertion, at)

    async def retract_fact(self, tenant: str, fact_id: str, at: Micros) -> Fact:
        return await self._relational.retract_fact(tenant, fact_id, at)

    async def query_facts(self, tenant: str, query: FactQuery) -> list[Fact]:
        return await self._relational.query_facts(tenant, query)

    # -- GDPR ----------------------------------------------------------------

    async def forget(self, tenant: str, scope: ForgetScope, at: Micros) -> ForgetResult:
        cutoff = forgetting.tombstone_for(scope, at).cutoff
        conditions: list[dict[str, Any]] = [{"created_at": {"$lt": cutoff}}]
        if scope.session_id is not None:
            conditions.append({"session_id": scope.session_id})
        where = conditions[0] if len(conditions) == 1 else {"$and": conditions}

        def delete_episodes() -> int:
            collection = self._collection(tenant, create=False)
            if collection is None:
                return 0
            ids = collection.get(where=where, include=[])["ids"]
            if ids:
                collection.delete(ids=ids)
            return len(ids)

        async with self._lock(tenant):
            relational = await self._relational.forget(tenant, scope, at)  # tombstone first, then delete
            deleted = await self._run(delete_episodes)
            await self._relational.bump_epoch(tenant)  # a recall that rebuilt mid-forget must rebuild again
        return ForgetResult(deleted, relational.blocks_deleted, relational.facts_deleted)

    async def export(self, tenant: str) -> AsyncIterator[ExportRecord]:
        for episode in sorted(await self._get(tenant), key=lambda e: e.seq):
            yield episode
        async for record in self._relational.export(tenant):
            yield record
