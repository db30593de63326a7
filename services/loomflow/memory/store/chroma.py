"""Chroma backend: episodes in embedded Chroma with our own embeddings; the rest in a SQLite file beside it.

Each tenant's episodes live in their own Chroma collection (named by the
SHA-256 of the tenant key, which the collection's metadata also records), so
no query ever filters a shared collection by user. A collection holds the
vectors of one embedder (its metadata names it; the hashing one's collection
keeps the name it had before embedders were named, the others' add a hash of
the embedder). The sidecar table ``memory_vector_collections`` says which
collection holds a tenant's episodes. After a switch of embedder, Recall uses
BM25 alone on a tenant still in the old collection (its vectors are never
compared with the new queries) until the tenant's next Remember, or
``loomflow memory reembed``, moves it: every episode is upserted with a new
vector into the new collection, the sidecar row is switched, then the old
collection is dropped (an interrupted move is redone from the old one). Vectors are always computed
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
import contextlib
import functools
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
from loomflow.memory.recall.embedding import LEGACY_EMBEDDER, Embedder, HashingEmbedder, LocalEmbedder, Vector
from loomflow.memory.recall.engine import CachedRecall
from loomflow.memory.recall.index import IndexedDoc
from loomflow.memory.store.sqlite import SQLiteStore

T = TypeVar("T")

SIDECAR = "loomflow-memory.db"
_EMPTY_PAGE: dict[str, list[Any]] = {"ids": [], "documents": [], "metadatas": []}
COLLECTIONS_KEPT_OPEN = 4096


class OurEmbeddings(EmbeddingFunction[Documents]):
    """Chroma's view of our embedder, so a collection never falls back to Chroma's default model.

    Every vector is passed to Chroma explicitly; this function only stands in for Chroma's default.
    Its ``name`` is fixed (Chroma refuses to reopen a collection under another function name), the
    embedder a collection holds is in the collection's metadata.
    """

    def __init__(self, embedder: Embedder | None = None) -> None:
        self._embedder = embedder or HashingEmbedder()

    def __call__(self, input: Documents) -> Embeddings:
        if not isinstance(self._embedder, LocalEmbedder):
            raise RuntimeError("loomflow passes Chroma its vectors explicitly")
        return list(self._embedder.embed_many(list(input)))

    @staticmethod
    def name() -> str:
        return "loomflow-feature-hashing"

    def get_config(self) -> dict[str, Any]:
        return {"dim": self._embedder.dim, "embedder": self._embedder.name}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> OurEmbeddings:
        return OurEmbeddings(HashingEmbedder(int(config.get("dim", 256))))

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"


def collection_name(tenant: str, embedder: str = LEGACY_EMBEDDER) -> str:
    """The collection of a tenant's episodes with this embedder's vectors."""
    base = "loomflow-memory-" + hashlib.sha256(tenant.encode()).hexdigest()
    return base if embedder == LEGACY_EMBEDDER else f"{base}-{hashlib.sha256(embedder.encode()).hexdigest()[:12]}"


STORED_COLLECTION = "SELECT name FROM memory_vector_collections WHERE tenant = ?"
PUT_STORED_COLLECTION = (
    "INSERT INTO memory_vector_collections (tenant, name) VALUES (?, ?) "
    "ON CONFLICT (tenant) DO UPDATE SET name = excluded.name"
)
MOVE_PAGE = 500


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

    def _stored_name(self, tenant: str) -> str:
        """The collection holding the tenant's episodes (a point read of the sidecar, on the event loop)."""
        rows = self._relational.read(STORED_COLLECTION, (tenant,))
        return str(rows[0][0]) if rows else collection_name(tenant)

    def _collection(self, tenant: str, name: str, create: bool) -> Any:
        """The tenant's collection ``name`` (None when missing and ``create`` is False). Runs in a Chroma thread."""
        with self._collections_lock:
            found = self._collections.get(name)
            if found is not None:
                self._collections.move_to_end(name)
                return found
        if create:
            found = self._client.get_or_create_collection(
                name,
                embedding_function=self._functions,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"tenant": tenant, "embedder": self._embedder.name},
            )
        else:
            try:
                found = self._client.get_collection(name, embedding_function=self._functions)
            except NotFoundError:
                return None
        if (found.metadata or {}).get("tenant") != tenant:
            raise RuntimeError(f"chroma collection {name} belongs to another tenant")
        with self._collections_lock:
            self._collections[name] = found
            while len(self._collections) > COLLECTIONS_KEPT_OPEN:
                self._collections.popitem(last=False)
        return found

    def _forget_collection(self, name: str) -> None:
        with self._collections_lock:
            self._collections.pop(name, None)

    async def _get(self, tenant: str, **query: Any) -> list[Episode]:
        name = self._stored_name(tenant)

        def run() -> list[Episode]:
            collection = self._collection(tenant, name, create=False)
            if collection is None:
                return []
            found = collection.get(include=["metadatas", "documents"], **query)
            return [_episode_from(tenant, m, d) for m, d in zip(found["metadatas"], found["documents"], strict=True)]

        return await self._run(run)

    def _upsert(self, tenant: str, name: str, page: Mapping[str, Any], vectors: list[Vector]) -> None:
        self._collection(tenant, name, create=True).upsert(
            ids=page["ids"], embeddings=vectors, documents=page["documents"], metadatas=page["metadatas"]
        )

    async def _move(self, tenant: str) -> int:
        """Moves the tenant's episodes into this embedder's collection (with the tenant's lock held).

        Upserts every episode with a new vector, then switches the sidecar row, then drops the old
        collection: an interruption leaves the old collection authoritative, and the move is redone.
        """
        source, target = self._stored_name(tenant), collection_name(tenant, self._embedder.name)
        if source == target:
            return 0
        moved = 0

        def read_page() -> dict[str, Any]:
            collection = self._collection(tenant, source, create=False)
            if collection is None:
                return _EMPTY_PAGE
            found: dict[str, Any] = collection.get(include=["metadatas", "documents"], limit=MOVE_PAGE, offset=moved)
            return found

        while True:
            page = await self._run(read_page)
            if not page["ids"]:
                break
            vectors = await self._embedder.embed_texts(page["documents"])
            await self._run(functools.partial(self._upsert, tenant, target, page, list(vectors)))
            moved += len(page["ids"])
        await self._relational.write(lambda conn: conn.execute(PUT_STORED_COLLECTION, (tenant, target)).fetchall())

        def drop_source() -> None:
            self._forget_collection(source)
            with contextlib.suppress(NotFoundError, ValueError):
                self._client.delete_collection(source)

        await self._run(drop_source)
        await self._relational.bump_epoch(tenant)  # cached indexes reload, now with vectors to compare
        return moved

    # -- episodes ----------------------------------------------------------

    async def remember(self, tenant: str, draft: EpisodeDraft, at: Micros) -> Episode:
        return (await self.remember_many(tenant, [draft], at))[0]

    async def remember_many(self, tenant: str, drafts: Sequence[EpisodeDraft], at: Micros) -> list[Episode]:
        if not drafts:
            return []
        vectors = list(await self._embedder.embed_texts([d.text for d in drafts]))
        target = collection_name(tenant, self._embedder.name)
        async with self._lock(tenant):
            first = await self._relational.reserve_episode_seqs(tenant, drafts, at)
            if self._stored_name(tenant) != target:  # one collection, one embedder: move the old episodes first
                await self._move(tenant)
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
                lambda: self._collection(tenant, target, create=True).add(
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

    async def tenants_after(self, after: str, limit: int) -> list[str]:
        return await self._relational.tenants_after(after, limit)

    async def reembed_page(self, tenant: str, after_seq: int, limit: int) -> tuple[int, int]:
        """Moves the whole tenant at once (a collection holds one embedder's vectors)."""
        async with self._lock(tenant):
            return await self._move(tenant), -1

    async def nearest(self, tenant: str, vector: Vector, session_id: str | None, count: int) -> Mapping[int, float]:
        name = self._stored_name(tenant)
        if name != collection_name(tenant, self._embedder.name):
            return {}  # the tenant's vectors are another embedder's: never compared (BM25 ranks alone)

        def run() -> dict[int, float]:
            collection = self._collection(tenant, name, create=False)
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

    # -- retention (store/retention.py) --

    async def tenants_with_episodes_before(self, cutoff: Micros, after: str, limit: int) -> list[str]:
        # Every tenant is a candidate (collections are per tenant); a tenant without old episodes deletes none.
        return await self.tenants_after(after, limit)

    async def delete_episodes_before(self, tenant: str, cutoff: Micros, limit: int) -> int:
        def delete(name: str) -> int:
            collection = self._collection(tenant, name, create=False)
            if collection is None:
                return 0
            found = collection.get(where={"created_at": {"$lt": cutoff}}, include=["metadatas"])
            stamped = sorted(zip(found["metadatas"] or [], found["ids"], strict=True), key=lambda m: int(m[0]["seq"]))
            ids = [episode_id for _, episode_id in stamped[:limit]]
            if ids:
                collection.delete(ids=ids)
            return len(ids)

        async with self._lock(tenant):
            deleted = await self._run(lambda: delete(self._stored_name(tenant)))
            if deleted:
                await self._relational.bump_epoch(tenant)  # every recall index of the tenant drops them
        return deleted

    async def forget(self, tenant: str, scope: ForgetScope, at: Micros) -> ForgetResult:
        cutoff = forgetting.tombstone_for(scope, at).cutoff
        conditions: list[dict[str, Any]] = [{"created_at": {"$lt": cutoff}}]
        if scope.session_id is not None:
            conditions.append({"session_id": scope.session_id})
        where = conditions[0] if len(conditions) == 1 else {"$and": conditions}

        def delete_episodes(name: str) -> int:
            collection = self._collection(tenant, name, create=False)
            if collection is None:
                return 0
            ids = collection.get(where=where, include=[])["ids"]
            if ids:
                collection.delete(ids=ids)
            return len(ids)

        async with self._lock(tenant):
            relational = await self._relational.forget(tenant, scope, at)  # tombstone first, then delete
            name = self._stored_name(tenant)
            deleted = await self._run(lambda: delete_episodes(name))
            await self._relational.bump_epoch(tenant)  # a recall that rebuilt mid-forget must rebuild again
        return ForgetResult(deleted, relational.blocks_deleted, relational.facts_deleted)

    async def export(self, tenant: str) -> AsyncIterator[ExportRecord]:
        for episode in sorted(await self._get(tenant), key=lambda e: e.seq):
            yield episode
        async for record in self._relational.export(tenant):
            yield record
