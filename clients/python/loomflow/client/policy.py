"""Typed client of PolicyService: checks, approvals (and watching them), policies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import grpc
from google.protobuf import struct_pb2

from loomflow.client._transport import ServiceClient, scope
from loomflow.v1 import policy_pb2, policy_pb2_grpc


def struct(values: Mapping[str, Any] | None) -> struct_pb2.Struct | None:
    if values is None:
        return None
    packed = struct_pb2.Struct()
    packed.update(dict(values))
    return packed


class PolicyClient(ServiceClient):
    _stub: policy_pb2_grpc.PolicyServiceAsyncStub

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = policy_pb2_grpc.PolicyServiceStub(channel)

    async def check(
        self,
        tool_name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        session_id: str = "",
        run_id: str = "",
        tool_tags: Iterable[str] = (),
    ) -> policy_pb2.CheckResponse:
        request = policy_pb2.CheckRequest(
            scope=scope(user_id, anonymous),
            tool_name=tool_name,
            arguments=struct(arguments or {}),
            session_id=session_id,
            run_id=run_id,
            tool_tags=list(tool_tags),
        )
        return await self._connection.unary(self._stub.Check, request, idempotent=True)

    async def request_approval(
        self,
        tool_name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        decision_id: str = "",
        session_id: str = "",
        run_id: str = "",
        reason: str = "",
        timeout_ms: int = 0,
    ) -> policy_pb2.Approval:
        request = policy_pb2.RequestApprovalRequest(
            scope=scope(user_id, anonymous),
            decision_id=decision_id,
            tool_name=tool_name,
            arguments=struct(arguments or {}),
            session_id=session_id,
            run_id=run_id,
            reason=reason,
            timeout_ms=timeout_ms,
        )
        reply = await self._connection.unary(self._stub.RequestApproval, request, idempotent=False)
        return reply.approval

    async def resolve_approval(
        self,
        approval_id: str,
        approve: bool,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        edited_arguments: Mapping[str, Any] | None = None,
        remember: bool = False,
        note: str = "",
    ) -> policy_pb2.Approval:
        """Approves or denies; the scope is the approval's tenant (an operator may resolve any tenant's)."""
        request = policy_pb2.ResolveApprovalRequest(
            scope=scope(user_id, anonymous),
            approval_id=approval_id,
            resolution=policy_pb2.RESOLUTION_APPROVE if approve else policy_pb2.RESOLUTION_DENY,
            edited_arguments=struct(edited_arguments),
            remember=remember,
            note=note,
        )
        reply = await self._connection.unary(self._stub.ResolveApproval, request, idempotent=False)
        return reply.approval

    async def get_approval(
        self, approval_id: str, *, user_id: str | None = None, anonymous: bool = False
    ) -> policy_pb2.Approval:
        request = policy_pb2.GetApprovalRequest(scope=scope(user_id, anonymous), approval_id=approval_id)
        reply = await self._connection.unary(self._stub.GetApproval, request, idempotent=True)
        return reply.approval

    async def watch_approvals(
        self,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        all_tenants: bool = False,
        include_resolved: bool = False,
        replay_pending: bool = False,
        deadline_s: float | None = None,
    ) -> AsyncIterator[policy_pb2.Approval]:
        """Approvals as they are created (and resolved, with ``include_resolved``), until cancelled.

        ``all_tenants`` (operator only) is how an approver bot subscribes."""
        request = policy_pb2.WatchApprovalsRequest(
            scope=scope(user_id, anonymous),
            all_tenants=all_tenants,
            include_resolved=include_resolved,
            replay_pending=replay_pending,
        )
        async for event in self._connection.stream(self._stub.WatchApprovals, request, deadline_s=deadline_s):
            yield event.approval

    async def get_policy(
        self, *, user_id: str | None = None, anonymous: bool = False, default_policy: bool = False
    ) -> policy_pb2.GetPolicyResponse:
        request = policy_pb2.GetPolicyRequest(scope=scope(user_id, anonymous), default_policy=default_policy)
        return await self._connection.unary(self._stub.GetPolicy, request, idempotent=True)

    async def put_policy(
        self,
        policy: policy_pb2.Policy,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        default_policy: bool = False,
    ) -> policy_pb2.Policy:
        """Replaces the tenant's policy (or the default). Operator only."""
        request = policy_pb2.PutPolicyRequest(
            scope=scope(user_id, anonymous), policy=policy, default_policy=default_policy
        )
        reply = await self._connection.unary(self._stub.PutPolicy, request, idempotent=True)
        return reply.policy
