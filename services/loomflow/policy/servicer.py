"""PolicyService on the wire: protobuf in, domain calls, protobuf out. Nothing else.

The kernel has already authenticated the caller (service or operator: end
users cannot call internal services), validated the request against the
.proto's rules and bound ``scope`` as the tenant. Every approval read and write
is keyed by that tenant, so another tenant's approval is NOT_FOUND whoever
asks; reading every tenant's stream, and changing policies, need an operator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from loomflow.kernel.auth import Role, current_principal, require_operator
from loomflow.kernel.errors import PermissionDenied
from loomflow.kernel.tenancy import is_all_tenants, tenant_key
from loomflow.kernel.timerange import time_range
from loomflow.policy import wire
from loomflow.policy.approvals import Approvals
from loomflow.policy.book import PolicyBook
from loomflow.policy.checks import Checker
from loomflow.policy.listing import DEFAULT_PAGE_SIZE, ApprovalListing
from loomflow.policy.models import DEFAULT_POLICY_KEY, ApprovalRequest, ResolutionInput
from loomflow.v1 import policy_pb2, policy_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def _resolver() -> tuple[str, bool]:
    """Who resolves an approval (``role:subject``) and whether it is the tenant themself.

    An operator may resolve any tenant's approval; a user only their own (the kernel
    already bound the token's subject to the scope), where the rule allows it. A
    service credential never: a stolen Agent token must not bypass human approval."""
    principal = current_principal()
    if principal.role is Role.SERVICE:
        raise PermissionDenied("a service credential cannot resolve approvals: an operator, or the tenant, must")
    return f"{principal.role.value}:{principal.subject}", principal.role is Role.USER


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    def __init__(self, book: PolicyBook, approvals: Approvals, checker: Checker) -> None:
        self._book = book
        self._approvals = approvals
        self._checker = checker

    async def Check(self, request: policy_pb2.CheckRequest, context: Context) -> policy_pb2.CheckResponse:
        result = await self._checker.check(
            tenant_key(request.scope),
            request.tool_name,
            wire.StructView(request.arguments),
            request.tool_tags,
            request.run_id,
        )
        verdict = result.verdict
        return policy_pb2.CheckResponse(
            decision_id=result.decision_id,
            decision=wire.DECISION_TO_WIRE[verdict.decision],
            matched_rule=verdict.matched_rule,
            reason=verdict.reason,
            mode=wire.MODE_TO_WIRE[result.mode],
            approval_id=result.approval_id,
        )

    async def RequestApproval(
        self, request: policy_pb2.RequestApprovalRequest, context: Context
    ) -> policy_pb2.RequestApprovalResponse:
        tenant = tenant_key(request.scope)
        arguments = wire.to_dict(request.arguments)
        approval = await self._approvals.request(
            ApprovalRequest(
                tenant=tenant,
                tool_name=request.tool_name,
                arguments=arguments,
                decision_id=request.decision_id,
                session_id=request.session_id,
                run_id=request.run_id,
                reason=request.reason,
                self_approval=await self._checker.self_approvable(tenant, request.tool_name, arguments),
                deferred=request.deferred,
            ),
            timeout_ms=request.timeout_ms,
        )
        return policy_pb2.RequestApprovalResponse(approval=wire.approval_to_wire(approval))

    async def ConsumeApproval(
        self, request: policy_pb2.ConsumeApprovalRequest, context: Context
    ) -> policy_pb2.ConsumeApprovalResponse:
        approval = await self._approvals.consume(
            tenant_key(request.scope),
            request.approval_id,
            request.tool_name,
            wire.to_dict(request.arguments),
            request.run_id,
        )
        return policy_pb2.ConsumeApprovalResponse(approval=wire.approval_to_wire(approval))

    async def ResolveApproval(
        self, request: policy_pb2.ResolveApprovalRequest, context: Context
    ) -> policy_pb2.ResolveApprovalResponse:
        resolved_by, by_tenant = _resolver()
        answer = ResolutionInput(
            resolution=wire.RESOLUTION_FROM_WIRE[request.resolution],
            resolved_by=resolved_by,
            edited_arguments=wire.to_dict(request.edited_arguments) if request.HasField("edited_arguments") else None,
            remember=request.remember,
            note=request.note,
        )
        approval = await self._approvals.resolve(
            tenant_key(request.scope), request.approval_id, answer, by_tenant=by_tenant
        )
        return policy_pb2.ResolveApprovalResponse(approval=wire.approval_to_wire(approval))

    async def GetApproval(
        self, request: policy_pb2.GetApprovalRequest, context: Context
    ) -> policy_pb2.GetApprovalResponse:
        approval = await self._approvals.get(tenant_key(request.scope), request.approval_id)
        return policy_pb2.GetApprovalResponse(approval=wire.approval_to_wire(approval))

    async def WatchApprovals(
        self, request: policy_pb2.WatchApprovalsRequest, context: Context
    ) -> AsyncIterator[policy_pb2.WatchApprovalsResponse]:
        every = request.all_tenants or is_all_tenants(request.scope)
        if every:
            require_operator("watching every tenant's approvals (all_tenants)")
        tenant = None if every else tenant_key(request.scope)
        watch = self._approvals.watch(
            tenant, include_resolved=request.include_resolved, replay_pending=request.replay_pending
        )
        try:
            # Headers now tell the client the subscription is in place: nothing created from here on is missed.
            await context.send_initial_metadata(())
            async for approval in watch:
                yield policy_pb2.WatchApprovalsResponse(approval=wire.approval_to_wire(approval))
        finally:
            watch.close()

    async def ListApprovals(
        self, request: policy_pb2.ListApprovalsRequest, context: Context
    ) -> policy_pb2.ListApprovalsResponse:
        page = await self._approvals.list_approvals(_listing(request), request.page_token)
        return policy_pb2.ListApprovalsResponse(
            approvals=[wire.approval_to_wire(a) for a in page.approvals], next_page_token=page.next_page_token
        )

    async def GetPolicy(self, request: policy_pb2.GetPolicyRequest, context: Context) -> policy_pb2.GetPolicyResponse:
        if request.default_policy:
            policy, is_default = self._book.default(), True
        else:
            policy, is_default = await self._book.applicable(tenant_key(request.scope))
        return policy_pb2.GetPolicyResponse(policy=wire.policy_to_wire(policy.policy), is_default=is_default)

    async def PutPolicy(self, request: policy_pb2.PutPolicyRequest, context: Context) -> policy_pb2.PutPolicyResponse:
        require_operator("PutPolicy")
        policy = wire.policy_from_wire(request.policy)
        key = DEFAULT_POLICY_KEY if request.default_policy else tenant_key(request.scope)
        stored = await self._book.put(key, policy)
        return policy_pb2.PutPolicyResponse(policy=wire.policy_to_wire(stored))

    async def Forget(
        self, request: policy_pb2.PolicyServiceForgetRequest, context: Context
    ) -> policy_pb2.PolicyServiceForgetResponse:
        receipt = await self._book.forget(tenant_key(request.scope), self._approvals.now())
        return policy_pb2.PolicyServiceForgetResponse(
            policy_removed=receipt.policy_removed,
            approvals_deleted=receipt.approvals_deleted,
            pending_approvals_deleted=receipt.pending_approvals_deleted,
            remembered_deleted=receipt.remembered_deleted,
        )

    async def Export(
        self, request: policy_pb2.PolicyServiceExportRequest, context: Context
    ) -> AsyncIterator[policy_pb2.PolicyServiceExportResponse]:
        exported = await self._book.export(tenant_key(request.scope))
        if exported.policy is not None:
            yield policy_pb2.PolicyServiceExportResponse(policy=wire.policy_to_wire(exported.policy))
        for approval in exported.approvals:
            yield policy_pb2.PolicyServiceExportResponse(approval=wire.approval_to_wire(approval))
        for answer in exported.remembered:
            yield policy_pb2.PolicyServiceExportResponse(remembered=wire.remembered_to_wire(answer))


_STATUS_FROM_WIRE = {wire_status: status for status, wire_status in wire.STATUS_TO_WIRE.items()}


def _listing(request: policy_pb2.ListApprovalsRequest) -> ApprovalListing:
    """A ListApprovals request as a listing (the kernel admitted all_tenants for operators only)."""
    created_from, created_to = time_range(request, "created_from", "created_to", 1000)
    return ApprovalListing(
        tenant=None if is_all_tenants(request.scope) else tenant_key(request.scope),
        statuses=frozenset(_STATUS_FROM_WIRE[s] for s in request.statuses),
        tool_name=request.tool_name,
        created_from=created_from,
        created_to=created_to,
        page_size=request.page_size or DEFAULT_PAGE_SIZE,
    )
