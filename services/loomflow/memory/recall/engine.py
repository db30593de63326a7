"""Recall for stores that keep episodes elsewhere: rank on the cached index, fetch hits and check freshness at once.

The hot path costs one round trip to the store: the cached per-tenant index
ranks the episodes, then one read returns the hits *and* the tenant's current
(epoch, seq). If they show a Forget (epoch) or episodes the index has not seen
(seq), the index is refreshed and the ranking redone; so a recall never misses
an episode stored, nor returns one forgotten, before it started, even by
another process.

The freshness check compares the database with what the index held *when it
ranked*, not with the entry afterwards: a concurrent call of the same tenant
(a run reads its history and recalls at once) may refresh the shared entry
while this one awaits its read, and its newer ``seen_seq`` says nothing about
the older ranking (``tests/memory/test_recall_cache_race.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from loomflow.memory.models import Episode, RecallHit, RecallQuery, SessionPage
from loomflow.memory.recall.cache import CachedIndex, IndexCache
from loomflow.memory.recall.embedding import Embedder, Vector
from loomflow.memory.recall.index import IndexedDoc, PreparedQuery, ScoredDoc, TenantIndex, prepare
from loomflow.memory.recall.tuning import tuning_for

MAX_REFRESHES = 3
"""Refresh-and-rerank rounds before answering from the newest index (writers may keep racing)."""


class RecallSource(Protocol):
    """What a store provides so :class:`CachedRecall` can serve its tenants."""

    async def probe(self, tenant: str) -> tuple[int, int]:
        """The tenant's (epoch, highest seq stored); (0, 0) for a tenant with nothing stored."""
        ...

    async def load(self, tenant: str, after_seq: int) -> list[IndexedDoc]:
        """The tenant's episodes with seq > ``after_seq``, ascending."""
        ...

    async def probe_and_fetch(self, tenant: str, seqs: Sequence[int]) -> tuple[int, int, Mapping[int, Episode]]:
        """(epoch, highest seq) as :meth:`probe`, and the episodes with these seqs (missing ones omitted)."""
        ...


class NearestSource(Protocol):
    """An external vector index (Chroma, pgvector) that ranks a tenant's episodes by cosine."""

    async def nearest(self, tenant: str, vector: Vector, session_id: str | None, count: int) -> Mapping[int, float]:
        """seq -> cosine of the tenant's ``count`` nearest episodes."""
        ...


async def to_hits(
    scored: Sequence[ScoredDoc], records: Mapping[int, Episode], query: PreparedQuery, embedder: Embedder
) -> list[RecallHit]:
    found = [(doc, records[doc.seq]) for doc in scored if doc.seq in records]
    # A hit without a vector here (outside the external index's candidates, or stored by another
    # embedder): embed its text with the query's embedder, so its vector_score is a true cosine.
    missing = [episode.text for doc, episode in found if doc.vector is None]
    computed = iter((await embedder.embed_texts(missing)) @ query.vector if missing else ())
    return [
        RecallHit(
            episode=episode,
            score=doc.score,
            lexical_score=doc.lexical,
            vector_score=float(next(computed)) if doc.vector is None else doc.vector,
        )
        for doc, episode in found
    ]


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
        self._weights = tuning_for(embedder.name).weights

    @property
    def cache(self) -> IndexCache:
        return self._cache

    async def _refresh(self, tenant: str, entry: CachedIndex | None, epoch: int, top_seq: int) -> CachedIndex:
        if entry is None or entry.epoch != epoch:
            index = TenantIndex(0 if self._nearest is not None else self._embedder.dim)
            if top_seq > 0:  # seq 0: the tenant never stored an episode, so there is nothing to load
                index.add(await self._source.load(tenant, 0))
            return self._cache.put(tenant, epoch, index, top_seq)
        if top_seq > entry.seen_seq:
            entry.index.add(await self._source.load(tenant, entry.index.max_seq))
            entry.seen_seq = max(top_seq, entry.index.max_seq)
            self._cache.resized(tenant)
        return entry

    async def _rank(
        self, tenant: str, index: TenantIndex, query: RecallQuery, prepared: PreparedQuery
    ) -> list[ScoredDoc]:
        nearest = None
        if self._nearest is not None and index.size:
            count = max(self._nearest_candidates, query.limit * 4)
            nearest = await self._nearest.nearest(tenant, prepared.vector, query.session_id, count)
        return index.search(
            prepared,
            query.limit,
            query.session_id,
            query.min_score,
            nearest,
            weights=self._weights,
            exclude_session_id=query.exclude_session_id,
        )

    async def recall(self, tenant: str, query: RecallQuery) -> list[RecallHit]:
        entry = self._cache.get(tenant)
        if entry is None:
            entry = await self._refresh(tenant, None, *await self._source.probe(tenant))
        prepared: PreparedQuery | None = None  # embedded once there is something to compare it with
        for _ in range(MAX_REFRESHES):
            ranked_epoch, ranked_seq = entry.epoch, entry.seen_seq  # what this ranking saw (see _fresh)
            scored: list[ScoredDoc] = []
            if entry.index.size:
                prepared = prepared or await prepare(query.text, self._embedder)
                scored = await self._rank(tenant, entry.index, query, prepared)
            epoch, top_seq, records = await self._source.probe_and_fetch(tenant, [doc.seq for doc in scored])
            if epoch == ranked_epoch and top_seq <= ranked_seq:
                break
            entry = await self._refresh(tenant, entry, epoch, top_seq)
        return await to_hits(scored, records, prepared, self._embedder) if prepared is not None else []

    async def list_session(self, tenant: str, page: SessionPage) -> list[Episode]:
        """A page of one session, newest first: the cached index picks the seqs, one read fetches them.

        Same freshness rule as :meth:`recall`: an episode stored (or forgotten)
        before the call started is seen (or not), even by another process.
        """
        entry = self._cache.get(tenant)
        if entry is None:
            entry = await self._refresh(tenant, None, *await self._source.probe(tenant))
        for _ in range(MAX_REFRESHES):
            ranked_epoch, ranked_seq = entry.epoch, entry.seen_seq
            seqs = entry.index.session_seqs(page.session_id, page.before_seq, page.limit)
            epoch, top_seq, records = await self._source.probe_and_fetch(tenant, seqs)
            if epoch == ranked_epoch and top_seq <= ranked_seq:
                break
            entry = await self._refresh(tenant, entry, epoch, top_seq)
        return [records[seq] for seq in seqs if seq in records]
