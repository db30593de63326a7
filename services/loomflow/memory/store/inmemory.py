"""The in-process backend: bounded per-tenant state (LRU + idle TTL), nothing durable.

Each tenant's state (episodes with their recall index, blocks, facts,
tombstones) lives in one entry of an ordered dict, so every operation costs what
that tenant holds. At most ``max_users`` tenants are kept (least recently used
evicted first) and a tenant idle for ``idle_ttl_seconds`` is dropped; 0 disables
either bound. Eviction drops the tenant's whole state, tombstones included: this
backend is for tests, demos and caches, not for data that must survive.

All methods run without awaiting, so each is atomic on the event loop: a write
can never interleave with a Forget.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace

from loomflow.kernel.errors import NotFound
from loomflow.memory import blocks, facts, forgetting, metrics
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
from loomflow.memory.recall.embedding import Embedder, HashingEmbedder, Vector
from loomflow.memory.recall.engine import to_hits
from loomflow.memory.recall.index import IndexedDoc, TenantIndex, prepare
from loomflow.memory.recall.tuning import tuning_for

DEFAULT_MAX_USERS = 100_000
DEFAULT_IDLE_TTL_SECONDS = 24 * 3600.0


@dataclass
class _Tenant:
    index: TenantIndex
    last_used: float
    episodes: dict[int, Episode] = field(default_factory=dict)
    episode_seqs: dict[str, int] = field(default_factory=dict)
    next_seq: int = 1
    blocks: dict[tuple[str, str], Block] = field(default_factory=dict)
    facts: dict[str, Fact] = field(default_factory=dict)
    tombstones: dict[str, Micros] = field(default_factory=dict)
    vectors: dict[int, Vector] = field(default_factory=dict)
    """seq -> embedding, so a Forget rebuilds the index without embedding anything again."""

    def cutoffs(self, session_id: str) -> tuple[Micros | None, ...]:
        return tuple(self.tombstones.get(key) for key in forgetting.write_scope_keys(session_id))


class InMemoryStore:
    def __init__(
        self,
        max_users: int = DEFAULT_MAX_USERS,
        idle_ttl_seconds: float = DEFAULT_IDLE_TTL_SECONDS,
        embedder: Embedder | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_users = max_users
        self._idle_ttl = idle_ttl_seconds
        self._embedder = embedder or HashingEmbedder()
        self._weights = tuning_for(self._embedder.name).weights
        self._clock = clock
        self._tenants: OrderedDict[str, _Tenant] = OrderedDict()

    @property
    def tenant_count(self) -> int:
        return len(self._tenants)

    def holds(self, tenant: str) -> bool:
        """Whether the tenant's state is resident (for tests of the bounds; does not touch LRU order)."""
        self._expire(self._clock())
        return tenant in self._tenants

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._tenants.clear()

    # -- bounded state ---------------------------------------------------

    def _expire(self, now: float) -> None:
        if self._idle_ttl <= 0:
            return
        while self._tenants:
            oldest, state = next(iter(self._tenants.items()))
            if now - state.last_used < self._idle_ttl:
                return
            del self._tenants[oldest]
            metrics.record_eviction("idle", oldest)

    def _state(self, tenant: str, create: bool) -> _Tenant | None:
        now = self._clock()
        self._expire(now)
        state = self._tenants.get(tenant)
        if state is None:
            if not create:
                return None
            state = _Tenant(index=TenantIndex(self._embedder.dim), last_used=now)
            self._tenants[tenant] = state
            if self._max_users > 0 and len(self._tenants) > self._max_users:
                evicted, _ = self._tenants.popitem(last=False)
                metrics.record_eviction("lru", evicted)
        else:
            self._tenants.move_to_end(tenant)
        state.last_used = now
        return state

    def _writable(self, tenant: str) -> _Tenant:
        state = self._state(tenant, create=True)
        assert state is not None
        return state

    # -- episodes ----------------------------------------------------------

    async def remember(self, tenant: str, draft: EpisodeDraft, at: Micros) -> Episode:
        return (await self.remember_many(tenant, [draft], at))[0]

    async def remember_many(self, tenant: str, drafts: Sequence[EpisodeDraft], at: Micros) -> list[Episode]:
        # Embedded first: the rest of this method does not await, so it stays atomic against a Forget.
        vectors = await self._embedder.embed_texts([d.text for d in drafts])
        state = self._writable(tenant)
        for session_id in {d.session_id for d in drafts}:
            forgetting.refuse_if_forgotten(state.cutoffs(session_id), at)
        stored = stamp(tenant, drafts, state.next_seq, at)
        state.next_seq += len(stored)
        for episode, vector in zip(stored, vectors, strict=True):
            state.episodes[episode.seq] = episode
            state.episode_seqs[episode.id] = episode.seq
            state.vectors[episode.seq] = vector
        state.index.add(IndexedDoc(e.seq, e.session_id, e.text, state.vectors[e.seq]) for e in stored)
        return stored

    async def recall(self, tenant: str, query: RecallQuery) -> list[RecallHit]:
        state = self._state(tenant, create=False)
        if state is None or not state.index.size:  # nothing to compare with: the query is not embedded
            return []
        prepared = await prepare(query.text, self._embedder)
        scored = state.index.search(
            prepared,
            query.limit,
            query.session_id,
            query.min_score,
            weights=self._weights,
            exclude_session_id=query.exclude_session_id,
        )
        return await to_hits(scored, state.episodes, prepared, self._embedder)

    async def tenants_after(self, after: str, limit: int) -> list[str]:
        """Nothing to re-embed: this backend's vectors always come from the process's one embedder."""
        return []

    async def reembed_page(self, tenant: str, after_seq: int, limit: int) -> tuple[int, int]:
        return 0, -1

    async def get_episode(self, tenant: str, episode_id: str) -> Episode:
        state = self._state(tenant, create=False)
        seq = state.episode_seqs.get(episode_id) if state else None
        if state is None or seq is None:
            raise NotFound(f"episode {episode_id!r} not found")
        return state.episodes[seq]

    async def list_episodes(self, tenant: str, page: SessionPage) -> list[Episode]:
        state = self._state(tenant, create=False)
        if state is None:
            return []
        return [state.episodes[seq] for seq in state.index.session_seqs(page.session_id, page.before_seq, page.limit)]

    # -- blocks --------------------------------------------------------------

    async def put_block(self, tenant: str, write: BlockWrite, at: Micros) -> Block:
        state = self._writable(tenant)
        forgetting.refuse_if_forgotten(state.cutoffs(write.session_id), at)
        key = (write.session_id, write.label)
        current = state.blocks.get(key)
        others = 0
        if write.max_tenant_bytes:
            others = sum(blocks.content_bytes(b.content) for k, b in state.blocks.items() if k != key)
        block = blocks.next_block(tenant, write, current.version if current else None, at, others)
        state.blocks[key] = block
        return block

    async def get_block(self, tenant: str, session_id: str, label: str) -> Block:
        state = self._state(tenant, create=False)
        block = state.blocks.get((session_id, label)) if state else None
        if block is None:
            raise blocks.block_not_found(label)
        return block

    async def list_blocks(self, tenant: str, session_id: str | None) -> list[Block]:
        state = self._state(tenant, create=False)
        if state is None:
            return []
        found = [b for b in state.blocks.values() if session_id is None or b.session_id == session_id]
        return sorted(found, key=lambda b: (b.session_id, b.label))

    async def delete_block(self, tenant: str, session_id: str, label: str, expected_version: int | None) -> int:
        state = self._state(tenant, create=False)
        current = state.blocks.get((session_id, label)) if state else None
        version = blocks.check_delete(label, current.version if current else None, expected_version)
        assert state is not None
        del state.blocks[(session_id, label)]
        return version

    # -- facts ---------------------------------------------------------------

    async def assert_fact(self, tenant: str, assertion: FactAssertion, at: Micros) -> AssertionResult:
        state = self._writable(tenant)
        forgetting.refuse_if_forgotten(state.cutoffs(assertion.session_id), at)
        believed = [
            r
            for r in state.facts.values()
            if r.retracted_at is None and r.subject == assertion.subject and r.predicate == assertion.predicate
        ]
        plan = facts.plan_assertion(tenant, believed, assertion, at)
        for row in plan.retract:
            state.facts[row.row_id] = replace(row, retracted_at=at)
        for row in plan.insert:
            state.facts[row.row_id] = row
        return AssertionResult(fact=plan.fact, superseded=plan.superseded)

    async def retract_fact(self, tenant: str, fact_id: str, at: Micros) -> Fact:
        state = self._state(tenant, create=False)
        believed = [r for r in state.facts.values() if r.id == fact_id and r.retracted_at is None] if state else []
        if state is None or not believed:
            raise NotFound(f"fact {fact_id!r} not found")
        retracted = [replace(r, retracted_at=at) for r in believed]
        for row in retracted:
            state.facts[row.row_id] = row
        return min(retracted, key=facts.answer_order)

    async def query_facts(self, tenant: str, query: FactQuery) -> list[Fact]:
        state = self._state(tenant, create=False)
        return facts.answer(state.facts.values(), query) if state else []

    # -- GDPR ----------------------------------------------------------------

    # -- retention (store/retention.py) --

    async def tenants_with_episodes_before(self, cutoff: Micros, after: str, limit: int) -> list[str]:
        found = (
            tenant
            for tenant, state in self._tenants.items()
            if tenant > after and any(e.created_at < cutoff for e in state.episodes.values())
        )
        return sorted(found)[:limit]

    async def delete_episodes_before(self, tenant: str, cutoff: Micros, limit: int) -> int:
        state = self._tenants.get(tenant)  # not _state: a sweep must not make an idle tenant recent
        if state is None:
            return 0
        gone = sorted((e for e in state.episodes.values() if e.created_at < cutoff), key=lambda e: e.seq)[:limit]
        for episode in gone:
            del state.episodes[episode.seq]
            del state.episode_seqs[episode.id]
            del state.vectors[episode.seq]
        if gone:
            self._reindex(state)
        return len(gone)

    def _reindex(self, state: _Tenant) -> None:
        """Rebuilds the tenant's recall index from the episodes it still holds."""
        state.index = TenantIndex(self._embedder.dim)
        state.index.add(
            IndexedDoc(e.seq, e.session_id, e.text, state.vectors[e.seq])
            for e in sorted(state.episodes.values(), key=lambda e: e.seq)
        )

    async def forget(self, tenant: str, scope: ForgetScope, at: Micros) -> ForgetResult:
        state = self._writable(tenant)
        tombstone = forgetting.tombstone_for(scope, at)
        cutoff = tombstone.cutoff
        state.tombstones[tombstone.scope_key] = max(cutoff, state.tombstones.get(tombstone.scope_key, cutoff))

        gone_episodes = [
            e for e in state.episodes.values() if forgetting.covered(scope, cutoff, e.session_id, e.created_at)
        ]
        for episode in gone_episodes:
            del state.episodes[episode.seq]
            del state.episode_seqs[episode.id]
            del state.vectors[episode.seq]
        if gone_episodes:
            self._reindex(state)
        gone_blocks = [
            k for k, b in state.blocks.items() if forgetting.covered(scope, cutoff, b.session_id, b.updated_at)
        ]
        for key in gone_blocks:
            del state.blocks[key]
        gone_facts = [r for r in state.facts.values() if forgetting.covered(scope, cutoff, r.session_id, r.recorded_at)]
        for row in gone_facts:
            del state.facts[row.row_id]
        return ForgetResult(
            episodes_deleted=len(gone_episodes),
            blocks_deleted=len(gone_blocks),
            facts_deleted=len({r.id for r in gone_facts}),
        )

    async def export(self, tenant: str) -> AsyncIterator[ExportRecord]:
        state = self._state(tenant, create=False)
        if state is None:
            return
        records: list[ExportRecord] = [
            *sorted(state.episodes.values(), key=lambda e: e.seq),
            *sorted(state.blocks.values(), key=lambda b: (b.session_id, b.label)),
            *sorted(state.facts.values(), key=facts.answer_order),
        ]
        for record in records:
            yield record
