"""AuditService over gRPC: wire ↔ domain, nothing else.

The kernel interceptor has already authenticated the caller, validated the
request and bound the tenant; here requests become domain calls on
:class:`loomflow.audit.core.AuditLog` and results become messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.message import DecodeError

from loomflow.audit import tenant_list, usage
from loomflow.audit.core import AuditLog
from loomflow.audit.models import ChainReport, Checkpoint, Draft, QueryFilter, ReadEntry
from loomflow.kernel.auth import current_principal, require_operator
from loomflow.kernel.errors import InvalidArgument
from loomflow.kernel.tenancy import is_all_tenants, scope_for, tenant_key
from loomflow.kernel.timerange import time_range
from loomflow.v1 import audit_pb2, audit_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_QUERY_LIMIT = 100


def _timestamp(micros: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=micros // 1_000_000, nanos=(micros % 1_000_000) * 1000)


def _payload(plaintext: bytes) -> struct_pb2.Struct | None:
    if not plaintext:
        return None
    try:
        return struct_pb2.Struct.FromString(plaintext)
    except DecodeError:
        return None


def _entry_message(item: ReadEntry) -> audit_pb2.AuditEntry:
    e = item.entry
    return audit_pb2.AuditEntry(
        seq=e.seq,
        ts=_timestamp(e.ts_us),
        scope=scope_for(e.user_id),
        session_id=e.session_id,
        run_id=e.run_id,
        actor=e.actor,
        action=e.action,
        payload=_payload(item.payload),
        decision_id=e.decision_id,
        prev_mac=e.prev_mac,
        mac=e.mac,
        payload_shredded=item.shredded,
    )


def _chain_message(report: ChainReport) -> audit_pb2.ChainVerification:
    return audit_pb2.ChainVerification(
        scope=scope_for(report.tenant) if report.tenant is not None else None,
        ok=report.ok,
        entries_checked=report.entries_checked,
        first_bad_seq=report.first_bad_seq,
        reason=report.reason,
        tenant_digest=report.tenant_digest,
    )


def checkpoint_message(checkpoint: Checkpoint) -> audit_pb2.Checkpoint:
    return audit_pb2.Checkpoint(
        checkpoint_id=checkpoint.checkpoint_id,
        created_at=_timestamp(checkpoint.created_us),
        heads=[audit_pb2.ChainHead(tenant_digest=h.tenant_digest, seq=h.seq, mac=h.mac) for h in checkpoint.heads],
        signature=checkpoint.signature,
        public_key=checkpoint.public_key,
    )


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, audit_log: AuditLog) -> None:
        self._log = audit_log

    async def Append(self, request: audit_pb2.AppendRequest, context: Context) -> audit_pb2.AppendResponse:
        draft = Draft(
            tenant=tenant_key(request.scope),
            actor=request.actor,
            action=request.action,
            session_id=request.session_id,
            run_id=request.run_id,
            decision_id=request.decision_id,
            payload=request.payload.SerializeToString(deterministic=True) if request.HasField("payload") else b"",
        )
        appended = await self._log.append(draft)
        return audit_pb2.AppendResponse(seq=appended.seq, ts=_timestamp(appended.ts_us), mac=appended.mac)

    async def Query(self, request: audit_pb2.QueryRequest, context: Context) -> audit_pb2.QueryResponse:
        every = request.all_tenants or is_all_tenants(request.scope)
        if every:
            require_operator("Query with all_tenants")
        from_us, to_us = _time_range(request)
        query = QueryFilter(
            tenant=None if every else tenant_key(request.scope),
            session_id=request.session_id,
            run_id=request.run_id,
            action=request.action,
            after_seq=request.after_seq,
            limit=request.limit or DEFAULT_QUERY_LIMIT,
            from_us=from_us,
            to_us=to_us,
        )
        found = await self._log.query(query)
        return audit_pb2.QueryResponse(entries=[_entry_message(item) for item in found])

    async def Usage(self, request: audit_pb2.UsageRequest, context: Context) -> audit_pb2.UsageResponse:
        from_us, to_us = _time_range(request)
        if is_all_tenants(request.scope):
            require_operator("Usage with all_tenants")
            tenants = await self._log.tenants(after=usage.decode_token(request.page_token))
        else:
            tenants = [tenant_key(request.scope)]
        rows, token = await usage.usage_page(
            self._log.query, tenants, from_us, to_us, request.page_size or usage.DEFAULT_PAGE_SIZE
        )
        return audit_pb2.UsageResponse(tenants=[_usage_message(r) for r in rows], next_page_token=token)

    async def ListTenants(
        self, request: audit_pb2.ListTenantsRequest, context: Context
    ) -> audit_pb2.ListTenantsResponse:
        if not is_all_tenants(request.scope):
            raise InvalidArgument.field(
                "scope", "ListTenants lists every tenant: pass scope.all_tenants", "scope.all_tenants.required"
            )
        require_operator("ListTenants")
        rows, last = await tenant_list.tenants_page(
            self._log,
            after=usage.decode_token(request.page_token),
            page_size=request.page_size or tenant_list.DEFAULT_PAGE_SIZE,
        )
        return audit_pb2.ListTenantsResponse(
            tenants=[
                audit_pb2.TenantSummary(
                    scope=scope_for(r.tenant), last_seen_time=_timestamp(r.last_seen_us), audit_entries=r.audit_entries
                )
                for r in rows
            ],
            next_page_token=usage.encode_token(last) if last else "",
        )

    async def Verify(self, request: audit_pb2.VerifyRequest, context: Context) -> audit_pb2.VerifyResponse:
        every = request.all_tenants or is_all_tenants(request.scope)
        if every:
            require_operator("Verify with all_tenants")
        report = await self._log.verify(None if every else tenant_key(request.scope))
        return audit_pb2.VerifyResponse(
            ok=report.ok,
            chains=[_chain_message(c) for c in report.chains],
            checkpoint_id=report.checkpoint_id,
            checkpoint_error=report.checkpoint_error,
            unreadable_records=report.unreadable,
        )

    async def GetCheckpoint(
        self, request: audit_pb2.GetCheckpointRequest, context: Context
    ) -> audit_pb2.GetCheckpointResponse:
        checkpoint = await self._log.checkpoint(create=request.create)
        return audit_pb2.GetCheckpointResponse(checkpoint=checkpoint_message(checkpoint))

    async def Export(
        self, request: audit_pb2.AuditServiceExportRequest, context: Context
    ) -> AsyncIterator[audit_pb2.AuditServiceExportResponse]:
        async for item in self._log.export(tenant_key(request.scope)):
            yield audit_pb2.AuditServiceExportResponse(entry=_entry_message(item))

    async def Forget(
        self, request: audit_pb2.AuditServiceForgetRequest, context: Context
    ) -> audit_pb2.AuditServiceForgetResponse:
        shredded = await self._log.forget(tenant_key(request.scope), actor=current_principal().subject)
        return audit_pb2.AuditServiceForgetResponse(entries_shredded=shredded)


def _time_range(request: audit_pb2.QueryRequest | audit_pb2.UsageRequest) -> tuple[int, int]:
    """The request's [from_time, to_time) in Unix microseconds (0: unbounded on that side)."""
    return time_range(request, "from_time", "to_time", 1_000_000)


def _usage_message(totals: usage.TenantTotals) -> audit_pb2.TenantUsage:
    return audit_pb2.TenantUsage(
        scope=scope_for(totals.tenant),
        runs=len(totals.run_ids),
        models=[
            audit_pb2.ModelUsage(
                model=model,
                model_calls=m.model_calls,
                input_tokens=m.input_tokens,
                output_tokens=m.output_tokens,
                cached_input_tokens=m.cached_input_tokens,
            )
            for model, m in sorted(totals.models.items())
        ],
        shredded_model_calls=totals.shredded_model_calls,
    )
