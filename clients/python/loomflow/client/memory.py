"""Typed client of MemoryService: episodes, working blocks, bi-temporal facts, forget/export."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Mapping

import grpc
from google.protobuf import timestamp_pb2

from loomflow.client._transport import ServiceClient, scope
from loomflow.v1 import memory_pb2, memory_pb2_grpc


def timestamp(value: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    """A protobuf Timestamp from an aware datetime (naive ones are taken as UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


class MemoryClient(ServiceClient):
    _stub: memory_pb2_grpc.MemoryServiceAsyncStub

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = memory_pb2_grpc.MemoryServiceStub(channel)

    async def remember(
        self,
        input: str,
        output: str = "",
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        session_id: str = "",
        metadata: Mapping[str, str] | None = None,
        run_id: str = "",
    ) -> memory_pb2.Episode:
        request = memory_pb2.RememberRequest(
            scope=scope(user_id, anonymous),
            session_id=session_id,
            input=input,
            output=output,
            metadata=dict(metadata or {}),
            run_id=run_id,
        )
        reply = await self._connection.unary(self._stub.Remember, request, idempotent=False)
        return reply.episode

    async def recall(
        self,
        query: str,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        session_id: str = "",
        limit: int = 0,
        min_score: float = 0.0,
        exclude_session_id: str = "",
    ) -> list[memory_pb2.RecallHit]:
        request = memory_pb2.RecallRequest(
            scope=scope(user_id, anonymous),
            query=query,
            session_id=session_id,
            limit=limit,
            min_score=min_score,
            exclude_session_id=exclude_session_id,
        )
        reply = await self._connection.unary(self._stub.Recall, request, idempotent=True)
        return list(reply.hits)

    async def get_episode(
        self, episode_id: str, *, user_id: str | None = None, anonymous: bool = False
    ) -> memory_pb2.Episode:
        request = memory_pb2.GetEpisodeRequest(scope=scope(user_id, anonymous), episode_id=episode_id)
        reply = await self._connection.unary(self._stub.GetEpisode, request, idempotent=True)
        return reply.episode

    async def list_episodes(
        self,
        session_id: str,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> memory_pb2.ListEpisodesResponse:
        """One page of a session, newest first; pass ``next_page_token`` back for the older ones."""
        request = memory_pb2.ListEpisodesRequest(
            scope=scope(user_id, anonymous), session_id=session_id, page_size=page_size, page_token=page_token
        )
        reply: memory_pb2.ListEpisodesResponse = await self._connection.unary(
            self._stub.ListEpisodes, request, idempotent=True
        )
        return reply

    async def session_episodes(
        self, session_id: str, *, user_id: str | None = None, anonymous: bool = False, page_size: int = 100
    ) -> AsyncIterator[memory_pb2.Episode]:
        """Every episode of a session, newest first, page by page."""
        token = ""
        while True:
            page = await self.list_episodes(
                session_id, user_id=user_id, anonymous=anonymous, page_size=page_size, page_token=token
            )
            for episode in page.episodes:
                yield episode
            token = page.next_page_token
            if not token:
                return

    async def get_context(
        self,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        session_id: str = "",
        recall_query: str = "",
        recall_limit: int = 0,
        recall_exclude_session_id: str = "",
        history_page_size: int = 0,
        blocks_page_size: int = 0,
        facts_page_size: int = 0,
    ) -> memory_pb2.GetContextResponse:
        """What an agent reads before its first model call, in one call: the recall hits for a query,
        the session's newest episodes, the tenant-wide and session blocks, the current facts; each part
        only when its size is set, each as its own RPC would answer it."""
        request = memory_pb2.GetContextRequest(
            scope=scope(user_id, anonymous),
            session_id=session_id,
            recall_query=recall_query,
            recall_limit=recall_limit,
            recall_exclude_session_id=recall_exclude_session_id,
            history_page_size=history_page_size,
            blocks_page_size=blocks_page_size,
            facts_page_size=facts_page_size,
        )
        reply: memory_pb2.GetContextResponse = await self._connection.unary(
            self._stub.GetContext, request, idempotent=True
        )
        return reply

    async def put_block(
        self,
        label: str,
        content: str,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        session_id: str = "",
        expected_version: int | None = None,
    ) -> memory_pb2.Block:
        """Writes a block; with ``expected_version`` it fails with Conflict unless the stored version matches."""
        request = memory_pb2.PutBlockRequest(
            scope=scope(user_id, anonymous), label=label, session_id=session_id, content=content
        )
        if expected_version is not None:
            request.expected_version = expected_version
        reply = await self._connection.unary(self._stub.PutBlock, request, idempotent=False)
        return reply.block

    async def get_block(
        self, label: str, *, user_id: str | None = None, anonymous: bool = False, session_id: str = ""
    ) -> memory_pb2.Block:
        request = memory_pb2.GetBlockRequest(scope=scope(user_id, anonymous), label=label, session_id=session_id)
        reply = await self._connection.unary(self._stub.GetBlock, request, idempotent=True)
        return reply.block

    async def list_blocks(
        self, *, user_id: str | None = None, anonymous: bool = False, session_id: str = ""
    ) -> list[memory_pb2.Block]:
        """Every block (all pages), ordered by (session_id, label)."""
        return [b async for b in self.blocks(user_id=user_id, anonymous=anonymous, session_id=session_id)]

    async def blocks(
        self, *, user_id: str | None = None, anonymous: bool = False, session_id: str = "", page_size: int = 0
    ) -> AsyncIterator[memory_pb2.Block]:
        """The tenant's blocks, fetched one page (one ListBlocks call) at a time."""
        request = memory_pb2.ListBlocksRequest(
            scope=scope(user_id, anonymous), session_id=session_id, page_size=page_size
        )
        while True:
            reply = await self._connection.unary(self._stub.ListBlocks, request, idempotent=True)
            for block in reply.blocks:
                yield block
            if not reply.next_page_token:
                return
            request.page_token = reply.next_page_token

    async def delete_block(
        self,
        label: str,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        session_id: str = "",
        expected_version: int | None = None,
    ) -> int:
        """Deletes a block; returns the version deleted."""
        request = memory_pb2.DeleteBlockRequest(scope=scope(user_id, anonymous), label=label, session_id=session_id)
        if expected_version is not None:
            request.expected_version = expected_version
        reply = await self._connection.unary(self._stub.DeleteBlock, request, idempotent=False)
        return reply.version

    async def assert_fact(
        self,
        subject: str,
        predicate: str,
        object: str,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        valid_from: datetime.datetime | None = None,
        valid_until: datetime.datetime | None = None,
        session_id: str = "",
    ) -> memory_pb2.AssertFactResponse:
        request = memory_pb2.AssertFactRequest(
            scope=scope(user_id, anonymous),
            subject=subject,
            predicate=predicate,
            object=object,
            valid_from=timestamp(valid_from),
            valid_until=timestamp(valid_until),
            session_id=session_id,
        )
        return await self._connection.unary(self._stub.AssertFact, request, idempotent=False)

    async def retract_fact(
        self, fact_id: str, *, user_id: str | None = None, anonymous: bool = False
    ) -> memory_pb2.Fact:
        request = memory_pb2.RetractFactRequest(scope=scope(user_id, anonymous), fact_id=fact_id)
        reply = await self._connection.unary(self._stub.RetractFact, request, idempotent=True)
        return reply.fact

    async def query_facts(
        self,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        subject: str = "",
        predicate: str = "",
        valid_at: datetime.datetime | None = None,
        known_at: datetime.datetime | None = None,
        include_history: bool = False,
        limit: int = 0,
    ) -> list[memory_pb2.Fact]:
        """Facts true at ``valid_at`` as known at ``known_at`` (both default to now): the first
        ``limit`` (0: 100), read page by page."""
        found: list[memory_pb2.Fact] = []
        wanted = limit or 100
        async for fact in self.facts(
            user_id=user_id,
            anonymous=anonymous,
            subject=subject,
            predicate=predicate,
            valid_at=valid_at,
            known_at=known_at,
            include_history=include_history,
            page_size=min(wanted, 1000),
        ):
            found.append(fact)
            if len(found) >= wanted:
                break
        return found

    async def facts(
        self,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        subject: str = "",
        predicate: str = "",
        valid_at: datetime.datetime | None = None,
        known_at: datetime.datetime | None = None,
        include_history: bool = False,
        page_size: int = 0,
    ) -> AsyncIterator[memory_pb2.Fact]:
        """Every fact that answers the query, fetched one page (one QueryFacts call) at a time;
        all pages answer at the instants of the first."""
        request = memory_pb2.QueryFactsRequest(
            scope=scope(user_id, anonymous),
            subject=subject,
            predicate=predicate,
            valid_at=timestamp(valid_at),
            known_at=timestamp(known_at),
            include_history=include_history,
            page_size=page_size,
        )
        while True:
            reply = await self._connection.unary(self._stub.QueryFacts, request, idempotent=True)
            for fact in reply.facts:
                yield fact
            if not reply.next_page_token:
                return
            request.page_token = reply.next_page_token

    async def forget(
        self,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        session_id: str = "",
        before: datetime.datetime | None = None,
    ) -> memory_pb2.MemoryServiceForgetResponse:
        request = memory_pb2.MemoryServiceForgetRequest(
            scope=scope(user_id, anonymous), session_id=session_id, before=timestamp(before)
        )
        # Deleting again deletes nothing more, so a retry is safe.
        return await self._connection.unary(self._stub.Forget, request, idempotent=True)

    async def export(
        self, *, user_id: str | None = None, anonymous: bool = False, deadline_s: float | None = None
    ) -> AsyncIterator[memory_pb2.MemoryServiceExportResponse]:
        request = memory_pb2.MemoryServiceExportRequest(scope=scope(user_id, anonymous))
        async for record in self._connection.stream(self._stub.Export, request, deadline_s=deadline_s):
            yield record
