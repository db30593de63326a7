"""Typed client of AuditService: append, query, verify, checkpoints, export, forget."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc

from loomflow.client._transport import ServiceClient, scope
from loomflow.client.policy import struct
from loomflow.v1 import audit_pb2, audit_pb2_grpc


class AuditClient(ServiceClient):
    _stub: audit_pb2_grpc.AuditServiceAsyncStub

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = audit_pb2_grpc.AuditServiceStub(channel)

    async def append(
        self,
        actor: str,
        action: str,
        payload: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        session_id: str = "",
        run_id: str = "",
        decision_id: str = "",
    ) -> audit_pb2.AppendResponse:
        request = audit_pb2.AppendRequest(
            scope=scope(user_id, anonymous),
            session_id=session_id,
            run_id=run_id,
            actor=actor,
            action=action,
            payload=struct(payload),
            decision_id=decision_id,
        )
        return await self._connection.unary(self._stub.Append, request, idempotent=False)

    async def query(
        self,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        all_tenants: bool = False,
        session_id: str = "",
        run_id: str = "",
        action: str = "",
        after_seq: int = 0,
        limit: int = 0,
    ) -> list[audit_pb2.AuditEntry]:
        request = audit_pb2.QueryRequest(
            scope=scope(user_id, anonymous),
            all_tenants=all_tenants,
            session_id=session_id,
            run_id=run_id,
            action=action,
            after_seq=after_seq,
            limit=limit,
        )
        reply = await self._connection.unary(self._stub.Query, request, idempotent=True)
        return list(reply.entries)

    async def verify(
        self, *, user_id: str | None = None, anonymous: bool = False, all_tenants: bool = False
    ) -> audit_pb2.VerifyResponse:
        request = audit_pb2.VerifyRequest(scope=scope(user_id, anonymous), all_tenants=all_tenants)
        return await self._connection.unary(self._stub.Verify, request, idempotent=True)

    async def get_checkpoint(
        self, *, user_id: str | None = None, anonymous: bool = False, create: bool = False
    ) -> audit_pb2.Checkpoint:
        request = audit_pb2.GetCheckpointRequest(scope=scope(user_id, anonymous), create=create)
        reply = await self._connection.unary(self._stub.GetCheckpoint, request, idempotent=not create)
        return reply.checkpoint

    async def export(
        self, *, user_id: str | None = None, anonymous: bool = False, deadline_s: float | None = None
    ) -> AsyncIterator[audit_pb2.AuditEntry]:
        request = audit_pb2.AuditServiceExportRequest(scope=scope(user_id, anonymous))
        async for item in self._connection.stream(self._stub.Export, request, deadline_s=deadline_s):
            yield item.entry

    async def forget(self, *, user_id: str | None = None, anonymous: bool = False) -> int:
        """Crypto-shreds the tenant's payloads; returns how many entries can no longer be read."""
        request = audit_pb2.AuditServiceForgetRequest(scope=scope(user_id, anonymous))
        reply = await self._connection.unary(self._stub.Forget, request, idempotent=True)
        return reply.entries_shredded
