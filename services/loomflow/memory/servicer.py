"""MemoryService over gRPC: wire messages ↔ domain calls on a :class:`MemoryStore`, nothing else.

Each handler stamps ``at`` (now, in microseconds) when it starts: the instant
records are stamped with and Forget tombstones are compared against.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from google.protobuf import timestamp_pb2

from loomflow.kernel.errors import InvalidArgument
from loomflow.kernel.tenancy import scope_for, tenant_key, write_scope
from loomflow.memory import facts, metrics, paging
from loomflow.memory.context import fit_parts
from loomflow.memory.episodes import next_page_token, parse_page_token
from loomflow.memory.models import (
    Block,
    BlockWrite,
    Episode,
    EpisodeDraft,
    Fact,
    FactAssertion,
    FactQuery,
    ForgetScope,
    Micros,
    RecallHit,
    RecallQuery,
    SessionPage,
    now_micros,
)
from loomflow.memory.recall.embedding import Embedder
from loomflow.memory.recall.tuning import tuning_for
from loomflow.memory.store.base import MemoryStore
from loomflow.v1 import memory_pb2, memory_pb2_grpc

Context = Any  # grpc.aio.ServicerContext; unused by the handlers

DEFAULT_RECALL_LIMIT = 5
DEFAULT_EPISODE_PAGE = 20
_RESPONSE_MARGIN = 64 * 1024

# google.protobuf.Timestamp's documented range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def micros_of(ts: timestamp_pb2.Timestamp, field: str) -> Micros:
    if not (_MIN_SECONDS <= ts.seconds <= _MAX_SECONDS) or not (0 <= ts.nanos < 1_000_000_000):
        raise InvalidArgument.field(field, "timestamp out of range (years 1 to 9999, nanos 0 to 999,999,999)")
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def optional_micros(message: Any, field: str, path: str | None = None) -> Micros | None:
    return micros_of(getattr(message, field), path or field) if message.HasField(field) else None


def timestamp(micros: Micros) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    write_timestamp(message, micros)
    return message


def write_timestamp(message: timestamp_pb2.Timestamp, micros: Micros) -> None:
    """Sets a (sub-message) timestamp in place, to the microsecond."""
    message.seconds = micros // 1_000_000
    message.nanos = (micros % 1_000_000) * 1000


def episode_message(episode: Episode) -> memory_pb2.Episode:
    message = memory_pb2.Episode()
    write_episode(message, episode)
    return message


def write_episode(message: memory_pb2.Episode, episode: Episode) -> None:
    """Fills a (sub-message) episode in place: a third of the cost of building one and copying it in."""
    message.id = episode.id
    write_scope(message.scope, episode.tenant)
    message.session_id = episode.session_id
    message.input = episode.input
    message.output = episode.output
    if episode.metadata:
        message.metadata.update(episode.metadata)
    write_timestamp(message.created_at, episode.created_at)
    message.run_id = episode.run_id


def block_message(block: Block) -> memory_pb2.Block:
    return memory_pb2.Block(
        scope=scope_for(block.tenant),
        label=block.label,
        session_id=block.session_id,
        content=block.content,
        version=block.version,
        updated_at=timestamp(block.updated_at),
    )


def fact_message(fact: Fact) -> memory_pb2.Fact:
    message = memory_pb2.Fact(
        id=fact.id,
        scope=scope_for(fact.tenant),
        subject=fact.subject,
        predicate=fact.predicate,
        object=fact.object,
        valid_from=timestamp(fact.valid_from),
        recorded_at=timestamp(fact.recorded_at),
        session_id=fact.session_id,
    )
    if fact.valid_until is not None:
        write_timestamp(message.valid_until, fact.valid_until)
    if fact.retracted_at is not None:
        write_timestamp(message.retracted_at, fact.retracted_at)
    return message


def write_hits(field: Any, hits: Sequence[RecallHit]) -> None:
    """Appends recalled episodes with their scores to a repeated RecallHit field."""
    for hit in hits:
        message = field.add()
        write_episode(message.episode, hit.episode)
        message.score = hit.score
        message.lexical_score = hit.lexical_score
        message.vector_score = hit.vector_score


def facts_page_token(tenant: str, query: FactQuery, found: Sequence[Fact], kept: int) -> str:
    """The QueryFacts token of the page after the first ``kept`` of ``found``; empty when none is left
    over. It pins the query's instants, so "now" does not move between pages."""
    if len(found) <= kept:
        return ""
    last = facts.answer_order(found[kept - 1]) if kept else facts.BEFORE_EVERY_FACT
    filters = [query.subject, query.predicate, query.include_history]
    return paging.encode_token("QueryFacts", tenant, filters, [query.valid_at, query.known_at, *last])


def _facts_resume(key: list[Any]) -> tuple[Micros, Micros, tuple[str, str, int, int, str]]:
    """(valid_at, known_at, the last fact's answer-order key) from a QueryFacts page token."""
    try:
        valid, known, subject, predicate, valid_from, recorded_at, row_id = key
        return int(valid), int(known), (str(subject), str(predicate), int(valid_from), int(recorded_at), str(row_id))
    except (TypeError, ValueError):
        raise InvalidArgument.field("page_token", "not a page token this service issued") from None


async def _none() -> None:
    return None


class MemoryServicer(memory_pb2_grpc.MemoryServiceServicer):
    def __init__(
        self,
        store: MemoryStore,
        max_message_bytes: int = 4 * 1024 * 1024,
        max_block_bytes_per_user: int = 0,
        embedder: Embedder | None = None,
    ) -> None:
        self._store = store
        self._max_block_bytes = max_block_bytes_per_user
        self._embedder = embedder
        # A Recall answer must fit in one gRPC message: a tenant whose top hits are large
        # episodes would otherwise get RESOURCE_EXHAUSTED on every Recall (and every agent run).
        self._recall_bytes = max(64 * 1024, max_message_bytes - _RESPONSE_MARGIN)

    async def Remember(self, request: memory_pb2.RememberRequest, context: Context) -> memory_pb2.RememberResponse:
        at = now_micros()
        tenant = tenant_key(request.scope)
        draft = EpisodeDraft(
            session_id=request.session_id,
            input=request.input,
            output=request.output,
            metadata=dict(request.metadata),
            run_id=request.run_id,
        )
        episode = await self._store.remember(tenant, draft, at)
        metrics.record_episode_stored(tenant)
        return memory_pb2.RememberResponse(episode=episode_message(episode))

    async def Recall(self, request: memory_pb2.RecallRequest, context: Context) -> memory_pb2.RecallResponse:
        query = RecallQuery(
            text=request.query,
            limit=request.limit or DEFAULT_RECALL_LIMIT,
            session_id=request.session_id or None,
            min_score=request.min_score,
            exclude_session_id=request.exclude_session_id or None,
        )
        hits = await self._recall(tenant_key(request.scope), query)
        response = memory_pb2.RecallResponse()
        self._name_embedder(response)
        write_hits(response.hits, hits)
        while response.hits and response.ByteSize() > self._recall_bytes:
            del response.hits[-1]  # the best hits that fit; the rest would make the answer undeliverable
        return response

    async def _recall(self, tenant: str, query: RecallQuery) -> list[RecallHit]:
        started = time.perf_counter()
        hits = await self._store.recall(tenant, query)
        metrics.record_recall(tenant, started)
        return hits

    def _name_embedder(self, response: memory_pb2.RecallResponse | memory_pb2.GetContextResponse) -> None:
        """The embedder whose cosines the hits carry, and where noise starts on its scale."""
        response.embedder = self._embedder.name if self._embedder else ""
        response.min_vector_similarity = tuning_for(response.embedder).min_similarity

    async def GetEpisode(
        self, request: memory_pb2.GetEpisodeRequest, context: Context
    ) -> memory_pb2.GetEpisodeResponse:
        episode = await self._store.get_episode(tenant_key(request.scope), request.episode_id)
        return memory_pb2.GetEpisodeResponse(episode=episode_message(episode))

    async def ListEpisodes(
        self, request: memory_pb2.ListEpisodesRequest, context: Context
    ) -> memory_pb2.ListEpisodesResponse:
        size = request.page_size or DEFAULT_EPISODE_PAGE
        page = SessionPage(request.session_id, size + 1, parse_page_token(request.page_token))
        found = await self._store.list_episodes(tenant_key(request.scope), page)  # one more: is there a next page?
        response = memory_pb2.ListEpisodesResponse()
        for episode in found[:size]:
            write_episode(response.episodes.add(), episode)
        while len(response.episodes) > 1 and response.ByteSize() > self._recall_bytes:
            del response.episodes[-1]  # the newest that fit in one message; the next page continues below them
        response.next_page_token = next_page_token(found, len(response.episodes))
        return response

    async def PutBlock(self, request: memory_pb2.PutBlockRequest, context: Context) -> memory_pb2.PutBlockResponse:
        at = now_micros()
        write = BlockWrite(
            label=request.label,
            session_id=request.session_id,
            content=request.content,
            expected_version=request.expected_version if request.HasField("expected_version") else None,
            max_tenant_bytes=self._max_block_bytes,
        )
        block = await self._store.put_block(tenant_key(request.scope), write, at)
        return memory_pb2.PutBlockResponse(block=block_message(block))

    async def GetBlock(self, request: memory_pb2.GetBlockRequest, context: Context) -> memory_pb2.GetBlockResponse:
        block = await self._store.get_block(tenant_key(request.scope), request.session_id, request.label)
        return memory_pb2.GetBlockResponse(block=block_message(block))

    async def ListBlocks(
        self, request: memory_pb2.ListBlocksRequest, context: Context
    ) -> memory_pb2.ListBlocksResponse:
        tenant = tenant_key(request.scope)
        filters = [request.session_id]
        after = paging.decode_token(request.page_token, "ListBlocks", tenant, filters)
        if after is not None and (len(after) != 2 or not all(isinstance(part, str) for part in after)):
            raise InvalidArgument.field("page_token", "not a page token this service issued")
        # The tenant's blocks are bounded by --memory-max-block-bytes-per-user; the answer is paged.
        found = await self._store.list_blocks(tenant, request.session_id or None)
        if after is not None:
            found = [b for b in found if [b.session_id, b.label] > after]
        page, more = paging.fit(found, paging.page_size(request.page_size), self._recall_bytes, block_message)
        response = memory_pb2.ListBlocksResponse(blocks=page)  # type: ignore[arg-type]
        if more:
            last = response.blocks[-1]
            response.next_page_token = paging.encode_token("ListBlocks", tenant, filters, [last.session_id, last.label])
        return response

    async def DeleteBlock(
        self, request: memory_pb2.DeleteBlockRequest, context: Context
    ) -> memory_pb2.DeleteBlockResponse:
        expected = request.expected_version if request.HasField("expected_version") else None
        version = await self._store.delete_block(tenant_key(request.scope), request.session_id, request.label, expected)
        return memory_pb2.DeleteBlockResponse(version=version)

    async def AssertFact(
        self, request: memory_pb2.AssertFactRequest, context: Context
    ) -> memory_pb2.AssertFactResponse:
        at = now_micros()
        valid_from = optional_micros(request, "valid_from")
        valid_until = optional_micros(request, "valid_until")
        start = at if valid_from is None else valid_from
        if valid_until is not None and valid_until <= start:
            raise InvalidArgument.field("valid_until", "must be after valid_from (which defaults to now)")
        assertion = FactAssertion(
            subject=request.subject,
            predicate=request.predicate,
            object=request.object,
            valid_from=start,
            valid_until=valid_until,
            session_id=request.session_id,
        )
        result = await self._store.assert_fact(tenant_key(request.scope), assertion, at)
        return memory_pb2.AssertFactResponse(
            fact=fact_message(result.fact), superseded=[fact_message(f) for f in result.superseded]
        )

    async def RetractFact(
        self, request: memory_pb2.RetractFactRequest, context: Context
    ) -> memory_pb2.RetractFactResponse:
        fact = await self._store.retract_fact(tenant_key(request.scope), request.fact_id, now_micros())
        return memory_pb2.RetractFactResponse(fact=fact_message(fact))

    async def QueryFacts(
        self, request: memory_pb2.QueryFactsRequest, context: Context
    ) -> memory_pb2.QueryFactsResponse:
        at = now_micros()
        tenant = tenant_key(request.scope)
        valid_at = optional_micros(request, "valid_at")
        known_at = optional_micros(request, "known_at")
        valid, known = (at if valid_at is None else valid_at), (at if known_at is None else known_at)
        # A token pins the query's instants too: "now" must not move between the pages of one answer.
        filters = [request.subject, request.predicate, request.include_history]
        token = paging.decode_token(request.page_token, "QueryFacts", tenant, filters)
        after = None
        if token is not None:
            valid, known, after = _facts_resume(token)
        size = paging.page_size(request.page_size, request.limit)
        query = FactQuery(
            valid_at=valid,
            known_at=known,
            subject=request.subject,
            predicate=request.predicate,
            include_history=request.include_history,
            limit=size + 1,  # one more tells whether another page follows
            after=after,
        )
        found = await self._store.query_facts(tenant, query)
        page, _ = paging.fit(found, size, self._recall_bytes, fact_message)
        response = memory_pb2.QueryFactsResponse(facts=page)  # type: ignore[arg-type]
        response.next_page_token = facts_page_token(tenant, query, found, len(page))
        return response

    async def GetContext(
        self, request: memory_pb2.GetContextRequest, context: Context
    ) -> memory_pb2.GetContextResponse:
        """Recall, a history page, blocks and current facts in one call (a run's reads before its first
        model call): each part read as its own RPC reads it, concurrently, then fitted into one message."""
        if request.recall_limit > 0 and not request.recall_query:
            raise InvalidArgument.field("recall_query", "must not be empty when recall_limit is set")
        at = now_micros()
        tenant = tenant_key(request.scope)
        session = request.session_id
        recall = RecallQuery(
            text=request.recall_query,
            limit=request.recall_limit,
            exclude_session_id=request.recall_exclude_session_id or None,
        )
        history = SessionPage(session, request.history_page_size + 1)  # one more: is there a next page?
        current = FactQuery(valid_at=at, known_at=at, limit=request.facts_page_size + 1)
        hits, episodes, blocks, found_facts = await asyncio.gather(
            self._recall(tenant, recall) if request.recall_limit > 0 else _none(),
            self._store.list_episodes(tenant, history) if request.history_page_size > 0 else _none(),
            self._context_blocks(tenant, session) if request.blocks_page_size > 0 else _none(),
            self._store.query_facts(tenant, current) if request.facts_page_size > 0 else _none(),
        )
        response = memory_pb2.GetContextResponse()
        if hits is not None:
            self._name_embedder(response)
            write_hits(response.recall_hits, hits)
        for episode in (episodes or [])[: request.history_page_size]:
            write_episode(response.history.add(), episode)
        response.blocks.extend(block_message(b) for b in (blocks or [])[: request.blocks_page_size])
        response.facts.extend(fact_message(f) for f in (found_facts or [])[: request.facts_page_size])
        parts = (response.recall_hits, response.history, response.blocks, response.facts)
        _, kept_history, kept_blocks, kept_facts = fit_parts(parts, self._recall_bytes)
        response.history_next_page_token = next_page_token(episodes or [], kept_history)
        response.more_blocks = len(blocks or []) > kept_blocks
        response.facts_next_page_token = facts_page_token(tenant, current, found_facts or [], kept_facts)
        return response

    async def _context_blocks(self, tenant: str, session_id: str) -> list[Block]:
        """The tenant-wide blocks, then the session's: ListBlocks' order, without other sessions' blocks."""
        if not session_id:
            return await self._store.list_blocks(tenant, "")
        shared, own = await asyncio.gather(
            self._store.list_blocks(tenant, ""), self._store.list_blocks(tenant, session_id)
        )
        return [*shared, *own]

    async def Forget(
        self, request: memory_pb2.MemoryServiceForgetRequest, context: Context
    ) -> memory_pb2.MemoryServiceForgetResponse:
        at = now_micros()
        scope = ForgetScope(session_id=request.session_id or None, before=optional_micros(request, "before"))
        result = await self._store.forget(tenant_key(request.scope), scope, at)
        return memory_pb2.MemoryServiceForgetResponse(
            episodes_deleted=result.episodes_deleted,
            blocks_deleted=result.blocks_deleted,
            facts_deleted=result.facts_deleted,
        )

    async def Export(
        self, request: memory_pb2.MemoryServiceExportRequest, context: Context
    ) -> AsyncIterator[memory_pb2.MemoryServiceExportResponse]:
        async for record in self._store.export(tenant_key(request.scope)):
            if isinstance(record, Episode):
                yield memory_pb2.MemoryServiceExportResponse(episode=episode_message(record))
            elif isinstance(record, Block):
                yield memory_pb2.MemoryServiceExportResponse(block=block_message(record))
            else:
                yield memory_pb2.MemoryServiceExportResponse(fact=fact_message(record))
