"""Redis backend (redis-py asyncio).

Every key of a tenant starts with ``loomflow:memory:{<tenant>}:`` where
``<tenant>`` is the base64url of the tenant key: injective for any user id
(``:``, ``*``, ``{``, ``}`` included) and a Redis Cluster hash tag, so all of a
tenant's keys live in one slot and one script or transaction can touch them.
There is no global key: nothing is ever filtered by user.

Per tenant: ``t`` (hash: epoch, seq), ``e`` (hash: seq → episode JSON), ``v``
(hash: seq → float16 embedding tagged with its embedder and dimension), ``i`` (hash: episode id → seq), ``b`` (hash:
[session, label] → block JSON), ``f`` (hash: row id → fact version JSON), ``x``
(hash: tombstone scope → cutoff).

Remember is one Lua script (tombstone check, seq, writes: atomic, one round
trip). Blocks, facts and Forget are optimistic transactions (WATCH the
tenant's keys, apply the shared rules in Python, MULTI/EXEC, retry on
conflict), so a write and a Forget never interleave.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from loomflow.kernel.backends import redis as redis_backend
from loomflow.kernel.backends.errors import unavailable_on_outage
from loomflow.kernel.errors import NotFound, Unavailable
from loomflow.memory import blocks, facts, forgetting
from loomflow.memory.episodes import scope_keys, stamp
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
from loomflow.memory.recall.embedding import Embedder, HashingEmbedder, Vector, embedder_of, to_bytes, usable
from loomflow.memory.recall.engine import CachedRecall
from loomflow.memory.recall.index import IndexedDoc
from loomflow.memory.recall.reembed import rewrite_stale

T = TypeVar("T")
Raw = bytes | str
"""What redis-py's typing says a reply is (we connect with decode_responses=False: bytes)."""

MAX_RETRIES = 100
LOAD_PAGE = 1000

# KEYS: t, x, e, v, i   ARGV: at, tombstone scope count n, n scopes, then (id, episode JSON, embedding) per episode
# Returns the first seq, or -1 when a tombstone with a later cutoff covers the write.
REMEMBER = """
local at = tonumber(ARGV[1])
local scopes = tonumber(ARGV[2])
for k = 3, 2 + scopes do
  local cutoff = redis.call('HGET', KEYS[2], ARGV[k])
  if cutoff and at < tonumber(cutoff) then return -1 end
end
local first = 3 + scopes
local count = (#ARGV - first + 1) / 3
local last = redis.call('HINCRBY', KEYS[1], 'seq', count)
for n = 0, count - 1 do
  local seq = last - count + 1 + n
  local base = first + 3 * n
  redis.call('HSET', KEYS[3], seq, ARGV[base + 1])
  redis.call('HSET', KEYS[4], seq, ARGV[base + 2])
  redis.call('HSET', KEYS[5], ARGV[base], seq)
end
return last - count + 1
"""

# KEYS: t, e, v   ARGV: after   → {top, seqs, episodes, embeddings} for seqs in (after, after + page]
LOAD_AFTER = """
local top = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local after = tonumber(ARGV[1])
local last = math.min(top, after + tonumber(ARGV[2]))
if last <= after then return {top, {}, {}, {}} end
local seqs = {}
for s = after + 1, last do seqs[#seqs + 1] = s end
return {top, seqs, redis.call('HMGET', KEYS[2], unpack(seqs)), redis.call('HMGET', KEYS[3], unpack(seqs))}
"""


# KEYS: t, e, v   ARGV: (seq, tagged vector) pairs. Replaces the vectors of episodes that still exist (a Forget
# may have removed some meanwhile) and bumps the epoch, so every process's cached index reloads them.
STORE_VECTORS = """
for n = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[n]) == 1 then redis.call('HSET', KEYS[3], ARGV[n], ARGV[n + 1]) end
end
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
return 0
"""

TENANT_ROW_PATTERN = "loomflow:memory:{*}:t"


def tenant_prefix(tenant: str) -> str:
    """``loomflow:memory:{<base64url(tenant)>}:``: injective, glob- and hash-tag-safe."""
    encoded = base64.urlsafe_b64encode(tenant.encode()).decode().rstrip("=")
    return f"loomflow:memory:{{{encoded}}}:"


def tenant_of_row_key(key: bytes) -> str:
    """The tenant of a ``loomflow:memory:{<base64url>}:t`` key."""
    encoded = key.decode().split("{", 1)[1].rsplit("}", 1)[0]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()


class _Keys:
    def __init__(self, tenant: str) -> None:
        prefix = tenant_prefix(tenant)
        self.tenant_row, self.episodes, self.vectors, self.ids = (prefix + k for k in ("t", "e", "v", "i"))
        self.blocks, self.facts, self.tombstones = (prefix + k for k in ("b", "f", "x"))

    @property
    def all(self) -> list[str]:
        return [self.tenant_row, self.episodes, self.vectors, self.ids, self.blocks, self.facts, self.tombstones]


WHAT = "memory database (Redis)"


def _unavailable_on_connection_errors() -> contextlib.AbstractContextManager[None]:
    """Lost or refused connections, timeouts and a read-only replica (after a failover) → ``Unavailable``."""
    return unavailable_on_outage(WHAT)


def _episode_json(episode: Episode) -> str:
    fields = asdict(episode)
    del fields["tenant"], fields["seq"]
    return json.dumps(fields, separators=(",", ":"))


def _episode_from(tenant: str, seq: int, raw: Raw) -> Episode:
    return Episode(tenant=tenant, seq=seq, **json.loads(raw))


def _block_field(session_id: str, label: str) -> str:
    return json.dumps([session_id, label], separators=(",", ":"))


def _block_from(tenant: str, field: Raw, raw: Raw) -> Block:
    session_id, label = json.loads(field)
    return Block(tenant=tenant, label=label, session_id=session_id, **json.loads(raw))


def _block_json(block: Block) -> str:
    return json.dumps(
        {"content": block.content, "version": block.version, "updated_at": block.updated_at}, separators=(",", ":")
    )


def _fact_json(fact: Fact) -> str:
    fields = asdict(fact)
    del fields["tenant"]
    return json.dumps(fields, separators=(",", ":"))


def _fact_from(tenant: str, raw: Raw) -> Fact:
    return Fact(tenant=tenant, **json.loads(raw))


def _cutoffs(raw: Sequence[Raw | None]) -> list[Micros | None]:
    return [None if c is None else int(c) for c in raw]


class RedisStore:
    def __init__(self, url: str, embedder: Embedder | None = None, cache_episodes: int = 2_000_000) -> None:
        self._url = url
        self._embedder = embedder or HashingEmbedder()
        self._redis: aioredis.Redis | None = None
        self._cache = IndexCache(cache_episodes)
        self._recall = CachedRecall(self, self._embedder, self._cache)

    @property
    def recall_cache(self) -> IndexCache:
        return self._cache

    async def start(self) -> None:
        self._redis = redis_backend.open_client(self._url, decode_responses=False, connect_timeout=5)
        with _unavailable_on_connection_errors():
            await self._redis.ping()
        self._remember = self._redis.register_script(REMEMBER)
        self._load_after = self._redis.register_script(LOAD_AFTER)
        self._store_vectors = self._redis.register_script(STORE_VECTORS)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    # -- plumbing ----------------------------------------------------------

    @property
    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise Unavailable("memory store is not started")
        return self._redis

    async def _call(self, operation: Awaitable[T]) -> T:
        with _unavailable_on_connection_errors():
            return await operation

    async def _optimistic(self, watch: Sequence[str], work: Callable[[Pipeline], Awaitable[T]]) -> T:
        """Runs ``work`` (reads, then ``pipe.multi()`` and queued writes) until EXEC wins over concurrent writers."""
        with _unavailable_on_connection_errors():
            async with self._client.pipeline(transaction=True) as pipe:
                for _ in range(MAX_RETRIES):
                    try:
                        await pipe.watch(*watch)
                        result = await work(pipe)
                        await pipe.execute()
                        return result
                    except WatchError:
                        continue
                    finally:
                        await pipe.reset()  # type: ignore[no-untyped-call]
        raise Unavailable("memory redis: too much contention on this tenant; retry")

    # -- episodes ----------------------------------------------------------

    async def remember(self, tenant: str, draft: EpisodeDraft, at: Micros) -> Episode:
        return (await self.remember_many(tenant, [draft], at))[0]

    async def remember_many(self, tenant: str, drafts: Sequence[EpisodeDraft], at: Micros) -> list[Episode]:
        if not drafts:
            return []
        keys = _Keys(tenant)
        stored = stamp(tenant, drafts, 0, at)  # seqs are assigned by the script
        scopes = scope_keys(drafts)
        args: list[Any] = [at, len(scopes), *scopes]
        vectors = await self._embedder.embed_texts([e.text for e in stored])
        for episode, vector in zip(stored, vectors, strict=True):
            args += [episode.id, _episode_json(episode), to_bytes(vector, self._embedder.name)]
        first = int(
            await self._call(
                self._remember(
                    keys=[keys.tenant_row, keys.tombstones, keys.episodes, keys.vectors, keys.ids], args=args
                )
            )
        )
        if first < 0:  # the script found a tombstone with a later cutoff
            raise forgetting.overtaken_by_forget()
        return [replace(e, seq=first + n) for n, e in enumerate(stored)]

    async def recall(self, tenant: str, query: RecallQuery) -> list[RecallHit]:
        return await self._recall.recall(tenant, query)

    async def list_episodes(self, tenant: str, page: SessionPage) -> list[Episode]:
        return await self._recall.list_session(tenant, page)

    async def probe(self, tenant: str) -> tuple[int, int]:
        epoch, seq = await self._call(self._client.hmget(_Keys(tenant).tenant_row, ["epoch", "seq"]))
        return int(epoch or 0), int(seq or 0)

    async def load(self, tenant: str, after_seq: int) -> list[IndexedDoc]:
        keys = _Keys(tenant)
        docs: list[IndexedDoc] = []
        while True:
            top, seqs, episodes, vectors = await self._call(
                self._load_after(keys=[keys.tenant_row, keys.episodes, keys.vectors], args=[after_seq, LOAD_PAGE])
            )
            for seq, raw, vector in zip(seqs, episodes, vectors, strict=True):
                if raw is not None:
                    episode = _episode_from(tenant, int(seq), raw)
                    docs.append(
                        IndexedDoc(episode.seq, episode.session_id, episode.text, usable(vector, self._embedder))
                    )
            after_seq += len(seqs)
            if not seqs or after_seq >= int(top):
                return docs

    # -- re-embedding (loomflow memory reembed) ---------------------------------

    async def tenants_after(self, after: str, limit: int) -> list[str]:
        """Tenants in key order after ``after``: one SCAN of the tenant rows (an offline-sized operation)."""
        with _unavailable_on_connection_errors():
            found = {tenant_of_row_key(k) async for k in self._client.scan_iter(match=TENANT_ROW_PATTERN, count=1000)}
        return sorted(t for t in found if t > after)[:limit]

    async def reembed_page(self, tenant: str, after_seq: int, limit: int) -> tuple[int, int]:
        return await rewrite_stale(self, self._embedder, tenant, after_seq, limit)

    async def stale_episodes(self, tenant: str, after_seq: int, limit: int) -> tuple[list[tuple[int, str]], int]:
        keys = _Keys(tenant)
        top, seqs, episodes, vectors = await self._call(
            self._load_after(keys=[keys.tenant_row, keys.episodes, keys.vectors], args=[after_seq, limit])
        )
        stale = [
            (int(seq), _episode_from(tenant, int(seq), raw).text)
            for seq, raw, vector in zip(seqs, episodes, vectors, strict=True)
            if raw is not None and embedder_of(vector) != self._embedder.name
        ]
        last = after_seq + len(seqs)
        return stale, (last if seqs and last < int(top) else -1)

    async def store_vectors(self, tenant: str, vectors: Sequence[tuple[int, Vector]]) -> None:
        keys = _Keys(tenant)
        args: list[Any] = []
        for seq, vector in vectors:
            args += [seq, to_bytes(vector, self._embedder.name)]
        await self._call(self._store_vectors(keys=[keys.tenant_row, keys.episodes, keys.vectors], args=args))

    async def probe_and_fetch(self, tenant: str, seqs: Sequence[int]) -> tuple[int, int, Mapping[int, Episode]]:
        keys = _Keys(tenant)
        with _unavailable_on_connection_errors():
            # One round trip; no MULTI needed: the tenant row is read first, so at worst it is older than
            # the episodes (a write in between is picked up by the next recall; a Forget drops records).
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hmget(keys.tenant_row, ["epoch", "seq"])
                if seqs:
                    pipe.hmget(keys.episodes, list(seqs))
                replies = await pipe.execute()
        epoch, top = replies[0]
        raws = replies[1] if seqs else []
        records = {seq: _episode_from(tenant, seq, raw) for seq, raw in zip(seqs, raws, strict=True) if raw is not None}
        return int(epoch or 0), int(top or 0), records

    async def get_episode(self, tenant: str, episode_id: str) -> Episode:
        keys = _Keys(tenant)
        seq = await self._call(self._client.hget(keys.ids, episode_id))
        raw = None if seq is None else await self._call(self._client.hget(keys.episodes, seq))
        if seq is None or raw is None:
            raise NotFound(f"episode {episode_id!r} not found")
        return _episode_from(tenant, int(seq), raw)

    # -- blocks --------------------------------------------------------------

    async def put_block(self, tenant: str, write: BlockWrite, at: Micros) -> Block:
        keys = _Keys(tenant)
        field = _block_field(write.session_id, write.label)

        async def work(pipe: Pipeline) -> Block:
            forgetting.refuse_if_forgotten(
                _cutoffs(await pipe.hmget(keys.tombstones, forgetting.write_scope_keys(write.session_id))), at
            )
            raw = await pipe.hget(keys.blocks, field)
            current = None if raw is None else int(json.loads(raw)["version"])
            others = 0
            if write.max_tenant_bytes:  # the hash is WATCHed: a concurrent write retries this whole check
                stored = await pipe.hgetall(keys.blocks)
                others = sum(
                    blocks.content_bytes(json.loads(value)["content"])
                    for name, value in stored.items()
                    if (name.decode() if isinstance(name, bytes) else name) != field
                )
            block = blocks.next_block(tenant, write, current, at, others)
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.hset(keys.blocks, field, _block_json(block))
            return block

        return await self._optimistic([keys.blocks, keys.tombstones], work)

    async def get_block(self, tenant: str, session_id: str, label: str) -> Block:
        field = _block_field(session_id, label)
        raw = await self._call(self._client.hget(_Keys(tenant).blocks, field))
        if raw is None:
            raise blocks.block_not_found(label)
        return _block_from(tenant, field.encode(), raw)

    async def list_blocks(self, tenant: str, session_id: str | None) -> list[Block]:
        raw = await self._call(self._client.hgetall(_Keys(tenant).blocks))
        found = [_block_from(tenant, field, value) for field, value in raw.items()]
        return sorted(
            (b for b in found if session_id is None or b.session_id == session_id),
            key=lambda b: (b.session_id, b.label),
        )

    async def delete_block(self, tenant: str, session_id: str, label: str, expected_version: int | None) -> int:
        keys = _Keys(tenant)
        field = _block_field(session_id, label)

        async def work(pipe: Pipeline) -> int:
            raw = await pipe.hget(keys.blocks, field)
            current = None if raw is None else int(json.loads(raw)["version"])
            version = blocks.check_delete(label, current, expected_version)
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.hdel(keys.blocks, field)
            return version

        return await self._optimistic([keys.blocks], work)

    # -- facts ---------------------------------------------------------------

    async def _fact_rows(self, tenant: str, source: Any) -> list[Fact]:
        return [_fact_from(tenant, raw) for raw in (await source.hgetall(_Keys(tenant).facts)).values()]

    async def assert_fact(self, tenant: str, assertion: FactAssertion, at: Micros) -> AssertionResult:
        keys = _Keys(tenant)

        async def work(pipe: Pipeline) -> AssertionResult:
            scopes = forgetting.write_scope_keys(assertion.session_id)
            forgetting.refuse_if_forgotten(_cutoffs(await pipe.hmget(keys.tombstones, scopes)), at)
            believed = [
                r
                for r in await self._fact_rows(tenant, pipe)
                if r.retracted_at is None and r.subject == assertion.subject and r.predicate == assertion.predicate
            ]
            plan = facts.plan_assertion(tenant, believed, assertion, at)
            changed = [replace(r, retracted_at=at) for r in plan.retract] + plan.insert
            pipe.multi()  # type: ignore[no-untyped-call]
            if changed:
                pipe.hset(keys.facts, mapping={r.row_id: _fact_json(r) for r in changed})
            return AssertionResult(fact=plan.fact, superseded=plan.superseded)

        return await self._optimistic([keys.facts, keys.tombstones], work)

    async def retract_fact(self, tenant: str, fact_id: str, at: Micros) -> Fact:
        keys = _Keys(tenant)

        async def work(pipe: Pipeline) -> Fact:
            rows = [r for r in await self._fact_rows(tenant, pipe) if r.id == fact_id and r.retracted_at is None]
            if not rows:
                raise NotFound(f"fact {fact_id!r} not found")
            retracted = [replace(r, retracted_at=at) for r in rows]
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.hset(keys.facts, mapping={r.row_id: _fact_json(r) for r in retracted})
            return min(retracted, key=facts.answer_order)

        return await self._optimistic([keys.facts], work)

    async def query_facts(self, tenant: str, query: FactQuery) -> list[Fact]:
        with _unavailable_on_connection_errors():
            return facts.answer(await self._fact_rows(tenant, self._client), query)

    # -- GDPR ----------------------------------------------------------------

    # -- retention (store/retention.py) --

    async def tenants_with_episodes_before(self, cutoff: Micros, after: str, limit: int) -> list[str]:
        # Every tenant is a candidate (Redis has no index by time); delete_episodes_before finds none
        # in a tenant without old episodes. One SCAN per pass, as tenants_after.
        return await self.tenants_after(after, limit)

    async def delete_episodes_before(self, tenant: str, cutoff: Micros, limit: int) -> int:
        keys = _Keys(tenant)

        async def work(pipe: Pipeline) -> int:
            stored = [_episode_from(tenant, int(s), raw) for s, raw in (await pipe.hgetall(keys.episodes)).items()]
            gone = sorted((e for e in stored if e.created_at < cutoff), key=lambda e: e.seq)[:limit]
            pipe.multi()  # type: ignore[no-untyped-call]
            if gone:
                pipe.hincrby(keys.tenant_row, "epoch", 1)  # every replica's recall index drops them
                pipe.hdel(keys.episodes, *[e.seq for e in gone])
                pipe.hdel(keys.vectors, *[e.seq for e in gone])
                pipe.hdel(keys.ids, *[e.id for e in gone])
            return len(gone)

        return await self._optimistic([keys.tenant_row, keys.episodes], work)

    async def forget(self, tenant: str, scope: ForgetScope, at: Micros) -> ForgetResult:
        keys = _Keys(tenant)
        tombstone = forgetting.tombstone_for(scope, at)
        cutoff = tombstone.cutoff

        async def work(pipe: Pipeline) -> ForgetResult:
            existing = await pipe.hget(keys.tombstones, tombstone.scope_key)
            episodes = [_episode_from(tenant, int(s), raw) for s, raw in (await pipe.hgetall(keys.episodes)).items()]
            gone_episodes = [e for e in episodes if forgetting.covered(scope, cutoff, e.session_id, e.created_at)]
            stored_blocks = await pipe.hgetall(keys.blocks)
            gone_blocks = [
                field
                for field, raw in stored_blocks.items()
                if forgetting.covered(scope, cutoff, *self._block_stamp(tenant, field, raw))
            ]
            gone_facts = [
                r
                for r in await self._fact_rows(tenant, pipe)
                if forgetting.covered(scope, cutoff, r.session_id, r.recorded_at)
            ]
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.hset(keys.tombstones, tombstone.scope_key, max(cutoff, int(existing or cutoff)))
            pipe.hincrby(keys.tenant_row, "epoch", 1)
            if gone_episodes:
                pipe.hdel(keys.episodes, *[e.seq for e in gone_episodes])
                pipe.hdel(keys.vectors, *[e.seq for e in gone_episodes])
                pipe.hdel(keys.ids, *[e.id for e in gone_episodes])
            if gone_blocks:
                pipe.hdel(keys.blocks, *gone_blocks)
            if gone_facts:
                pipe.hdel(keys.facts, *[r.row_id for r in gone_facts])
            return ForgetResult(len(gone_episodes), len(gone_blocks), len({r.id for r in gone_facts}))

        return await self._optimistic(keys.all, work)

    @staticmethod
    def _block_stamp(tenant: str, field: Raw, raw: Raw) -> tuple[str, Micros]:
        block = _block_from(tenant, field, raw)
        return block.session_id, block.updated_at

    async def export(self, tenant: str) -> AsyncIterator[ExportRecord]:
        keys = _Keys(tenant)
        raw_episodes = await self._call(self._client.hgetall(keys.episodes))
        for seq, raw in sorted(((int(s), r) for s, r in raw_episodes.items()), key=lambda item: item[0]):
            yield _episode_from(tenant, seq, raw)
        for block in await self.list_blocks(tenant, None):
            yield block
        with _unavailable_on_connection_errors():
            rows = await self._fact_rows(tenant, self._client)
        for fact in sorted(rows, key=facts.answer_order):
            yield fact
