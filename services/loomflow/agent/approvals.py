"""Waiting for a human: an ASK decision becomes a durable approval in PolicyService.

The run requests the approval, then waits for its resolution on the
``WatchApprovals`` stream, with ``GetApproval`` polls as a backstop (a
resolution can land before the stream is subscribed). Fail closed: no answer
before the timeout, or any error while waiting, means deny.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import grpc

from loomflow.agent.dependencies import Dependencies, dependency_error
from loomflow.v1 import policy_pb2, tenancy_pb2

log = logging.getLogger("loomflow.agent")

PENDING = policy_pb2.APPROVAL_STATUS_PENDING


@dataclass(frozen=True)
class ApprovalOutcome:
    approval: policy_pb2.Approval
    approved: bool
    reason: str


class ApprovalWaiter:
    def __init__(self, deps: Dependencies, timeout_s: float, poll_s: float) -> None:
        self._deps = deps
        self._timeout_s = timeout_s
        self._poll_s = poll_s

    async def request(
        self, scope: tenancy_pb2.UserScope, request: policy_pb2.RequestApprovalRequest, deadline: float
    ) -> policy_pb2.Approval:
        """Records the pending approval (a failure here fails the run: PolicyService is down)."""
        request.timeout_ms = max(1, int(min(self._timeout_s, deadline - time.monotonic()) * 1000))
        deps = self._deps
        try:
            reply = await deps.policy.RequestApproval(request, metadata=deps.metadata, timeout=deps.timeout(deadline))
        except grpc.aio.AioRpcError as error:
            raise dependency_error("policy", error) from None
        approval: policy_pb2.Approval = reply.approval
        return approval

    async def wait(self, approval: policy_pb2.Approval, deadline: float) -> ApprovalOutcome:
        """The approval's resolution, or a deny when none arrives in time or waiting fails."""
        until = min(deadline, time.monotonic() + self._timeout_s)
        try:
            resolved = await self._wait(approval, until)
        except Exception as error:  # noqa: BLE001  # fail closed: any failure while waiting is a deny
            log.warning("approval %s could not be confirmed: %s", approval.approval_id, error)
            return ApprovalOutcome(approval, False, f"approval could not be confirmed: {error}")
        if resolved is None:
            return ApprovalOutcome(approval, False, "approval timed out")
        if resolved.status == policy_pb2.APPROVAL_STATUS_APPROVED:
            return ApprovalOutcome(resolved, True, resolved.note or "approved")
        status = policy_pb2.ApprovalStatus.Name(resolved.status).removeprefix("APPROVAL_STATUS_").lower()
        return ApprovalOutcome(resolved, False, f"approval {status}" + (f": {resolved.note}" if resolved.note else ""))

    async def _wait(self, approval: policy_pb2.Approval, until: float) -> policy_pb2.Approval | None:
        if approval.status != PENDING:
            return approval
        deps = self._deps
        wanted = approval.approval_id
        watch = deps.policy.WatchApprovals(
            policy_pb2.WatchApprovalsRequest(scope=approval.scope, include_resolved=True),
            metadata=deps.metadata,
            timeout=max(0.001, until - time.monotonic()),
        )
        seen: asyncio.Future[policy_pb2.Approval] = asyncio.get_running_loop().create_future()

        async def follow() -> None:
            try:
                async for event in watch:
                    if event.approval.approval_id == wanted and event.approval.status != PENDING:
                        if not seen.done():
                            seen.set_result(event.approval)
                        return
            except grpc.aio.AioRpcError:
                pass  # the polls below still see the resolution

        follower = asyncio.create_task(follow())
        get = policy_pb2.GetApprovalRequest(scope=approval.scope, approval_id=wanted)
        try:
            while True:
                # At least a short deadline, so the last poll at `until` still gets an answer.
                timeout = max(0.05, min(deps.call_timeout_s, until - time.monotonic()))
                reply = await deps.policy.GetApproval(get, metadata=deps.metadata, timeout=timeout)
                if reply.approval.status != PENDING:
                    current: policy_pb2.Approval = reply.approval
                    return current
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(seen), min(self._poll_s, remaining))
        finally:
            watch.cancel()
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
