"""Recall for stores that keep episodes elsewhere: probe, refresh the cached index, rank, fetch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from loomflow.memory.models import Episode, RecallHit, RecallQuery
from loomflow.memory.recall.cache import IndexCache
from loomflow.memory.recall.embedding import Embedder, Vector
from loomflow.memory.recall.index import IndexedDoc, PreparedQuery, ScoredDoc, TenantIndex, prepare


class RecallSource(Protocol):
    """What a store provides so :class:`CachedRecall` can serve its tenants."""

    async def probe(self, tenant: str) -> tuple[int, int]:
        """The tenant's (epoch, highest seq stored); (0, 0) for a tenant with nothing stored."""
        ...

    async def load(self, tenant: str, after_seq: int) -> list[IndexedDoc]:
        """The tenant's episodes with seq > ``after_seq``, ascending."""
        ...

    async def fetch(self, tenant: str, seqs: Sequence[int]) -> Mapping[int, Episode]:
        """The tenant's episodes with these seqs (missing ones omitted: a Forget may have raced)."""
        ...


class NearestSource(Protocol):
    """An external vector index (Chroma, pgvector) that ranks a tenant's episodes by cosine."""

    async def nearest(self, tenant: str, vector: Vector, session_id: str | None, count: int) -> Mapping[int, float]:
        """seq -> cosine of the tenant's ``count`` nearest episodes."""
        ...


def to_hits(
    scored: Sequence[ScoredDoc], records: Mapping[int, Episode], query: PreparedQuery, embedder: Embedder
) -> list[RecallHit]:
    hits: list[RecallHit] = []
    for doc in scored:
        episode = records.get(doc.seq)
        if episode is None:
            continue
        vector = doc.vector
        if vector is None:  # outside the external index's candidates: the embedding is deterministic, recompute
            vector = float(embedder.embed(episode.text) @ query.vector)
        hits.append(RecallHit(episode=episode, score=doc.score, lexical_score=doc.lexical, vector_score=vector))
    return hits


class CachedRecall:
    def __init__(
        self,
        source: RecallSource,
        embedder: Embedder,
        cache: IndexCache,
        nearest: NearestSource | None = None,
        nearest_candidates: int = 200,
    ) -> None:
        self._source = source
        self._embedder = embedder
        self._cache = cache
        self._nearest = nearest
        self._nearest_candidates = nearest_candidates

    @property
    def cache(self) -> IndexCache:
        return self._cache

    async def index_for(self, tenant: str) -> TenantIndex:
        epoch, top_seq = await self._source.probe(tenant)
        entry = self._cache.get(tenant)
        if entry is None or entry.epoch != epoch:
            index = TenantIndex(0 if self._nearest is not None else self._embedder.dim)
            index.add(await self._source.load(tenant, 0), self._embedder)
            return self._cache.put(tenant, epoch, index).index
        if entry.index.max_seq < top_seq:
            entry.index.add(await self._source.load(tenant, entry.index.max_seq), self._embedder)
            self._cache.resized(tenant)
        return entry.index

    async def recall(self, tenant: str, query: RecallQuery) -> list[RecallHit]:
        index = await self.index_for(tenant)
        prepared = prepare(query.text, self._embedder)
        nearest = None
        if self._nearest is not None and index.size:
            count = max(self._nearest_candidates, query.limit * 4)
            nearest = await self._nearest.nearest(tenant, prepared.vector, query.session_id, count)
        scored = index.search(prepared, query.limit, query.session_id, query.min_score, nearest)
        if not scored:
            return []
        records = await self._source.fetch(tenant, [doc.seq for doc in scored])
        return to_hits(scored, records, prepared, self._embedder)
