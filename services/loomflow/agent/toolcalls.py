"""One tool call of a turn: policy check → approval when ASK → audit → run the tool.

The audit entry carrying the decision id is appended *before* the tool runs
(write-ahead), so a tool never acts without a record of who allowed it; if the
append fails the tool does not run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, struct_pb2
from google.protobuf.json_format import MessageToDict
from google.rpc import error_details_pb2

from loomflow.agent.approvals import ApprovalWaiter
from loomflow.agent.context import RunContext, bound_run_context
from loomflow.agent.dependencies import Dependencies, dependency_error
from loomflow.agent.models.base import Message, ToolCall
from loomflow.agent.tools.registry import ToolArgumentError, ToolRegistry
from loomflow.kernel.errors import FailedPrecondition, ServiceError
from loomflow.v1 import agent_pb2, audit_pb2, policy_pb2

log = logging.getLogger("loomflow.agent")

Emit = Callable[[agent_pb2.RunStreamResponse], None]

ALLOW = policy_pb2.DECISION_ALLOW
DENY = policy_pb2.DECISION_DENY
ASK = policy_pb2.DECISION_ASK


class ApprovalRequired(FailedPrecondition):
    """The run asked not to wait (``defer_approvals``): the caller gets the pending approval's id."""

    def __init__(self, tool_name: str, approval_id: str) -> None:
        super().__init__(f"tool {tool_name} needs approval {approval_id}; resume with approval_ids=[{approval_id!r}]")
        self.approval_id = approval_id

    def details(self) -> list[any_pb2.Any]:
        info = error_details_pb2.ErrorInfo(
            reason="APPROVAL_REQUIRED", domain="loomflow", metadata={"approval_id": self.approval_id}
        )
        packed = any_pb2.Any()
        packed.Pack(info)
        return [packed]


@dataclass
class HeldApprovals:
    """What a run was told about approvals: whether to wait, and approvals it already holds."""

    defer: bool = False
    ids: tuple[str, ...] = ()
    used: set[str] = field(default_factory=set)


@dataclass
class ToolOutcome:
    record: agent_pb2.ToolCallRecord
    message: Message
    """The tool result as the model sees it on the next turn."""
    denied: bool = False
    """The policy (or a human) refused the call: the run stops."""


def to_struct(values: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


class ToolCaller:
    def __init__(
        self, deps: Dependencies, tools: ToolRegistry, approvals: ApprovalWaiter, max_result_chars: int
    ) -> None:
        self._deps = deps
        self._tools = tools
        self._approvals = approvals
        self._max_result_chars = max_result_chars

    async def call(
        self,
        ctx: RunContext,
        call: ToolCall,
        turn: int,
        emit: Emit | None,
        held: HeldApprovals,
        offered: Collection[str] | None = None,
    ) -> ToolOutcome:
        record = agent_pb2.ToolCallRecord(call_id=call.id, tool_name=call.name)
        try:
            arguments = to_struct(call.arguments)
        except (ValueError, TypeError):
            arguments = struct_pb2.Struct()
        record.arguments.CopyFrom(arguments)
        tool = self._tools.get(call.name) if offered is None or call.name in offered else None
        if tool is None:  # a tool this run was not offered is one the model cannot call
            return self._result(record, f"error: there is no tool named {call.name!r}", False, emit)

        decision = await self._check(ctx, call.name, arguments, sorted(tool.tags))
        record.decision = decision.decision
        record.decision_id = decision.decision_id
        run_arguments = call.arguments
        reason = decision.reason or decision.matched_rule
        if decision.decision == ASK:
            approved, reason, edited = await self._ask(ctx, record, arguments, decision, emit, held, turn)
            record.decision = ALLOW if approved else DENY
            if edited is not None:
                run_arguments = edited
                record.arguments.CopyFrom(to_struct(edited))
        allowed = record.decision == ALLOW

        await self._audit(ctx, record, turn, decision, reason, allowed)
        if not allowed:
            return self._result(record, f"denied: {reason or 'by policy'}", False, emit, denied=True)
        try:
            with bound_run_context(ctx):
                async with asyncio.timeout(tool.timeout_s):
                    text = await tool.invoke(run_arguments)
        except ToolArgumentError as error:
            return self._result(record, f"error: {error}", False, emit)
        except TimeoutError:  # the tool's own limit; the run's deadline surfaces as cancellation instead
            return self._result(record, f"error: {call.name} timed out", True, emit)
        except ServiceError as error:
            return self._result(record, f"error: {error.message}", True, emit)
        except Exception as error:  # noqa: BLE001  # a tool's failure is the model's to read, not the run's end
            log.info("tool %s failed: %s", call.name, error)
            return self._result(record, f"error: {type(error).__name__}: {error}", True, emit)
        return self._result(record, text, True, emit)

    def _result(
        self,
        record: agent_pb2.ToolCallRecord,
        text: str,
        executed: bool,
        emit: Emit | None,
        *,
        denied: bool = False,
    ) -> ToolOutcome:
        text = text.replace("\x00", "")  # not storable in every backend the run writes to
        if len(text) > self._max_result_chars:
            text = text[: self._max_result_chars] + " …(truncated)"
        record.result = text
        record.executed = executed
        if emit is not None:
            emit(agent_pb2.RunStreamResponse(tool_call=record))
        failed = text.startswith(("error:", "denied:"))
        message = Message("tool", text, tool_call_id=record.call_id, tool_name=record.tool_name, is_error=failed)
        return ToolOutcome(record, message, denied)

    async def _check(
        self, ctx: RunContext, name: str, arguments: struct_pb2.Struct, tags: list[str]
    ) -> policy_pb2.CheckResponse:
        deps = self._deps
        request = policy_pb2.CheckRequest(
            scope=ctx.scope,
            tool_name=name,
            arguments=arguments,
            session_id=ctx.session_id,
            run_id=ctx.run_id,
            tool_tags=tags,
        )
        try:
            reply: policy_pb2.CheckResponse = await deps.policy.Check(
                request, metadata=deps.metadata, timeout=deps.timeout(ctx.deadline)
            )
        except grpc.aio.AioRpcError as error:
            raise dependency_error("policy", error) from None
        return reply

    async def _ask(
        self,
        ctx: RunContext,
        record: agent_pb2.ToolCallRecord,
        arguments: struct_pb2.Struct,
        decision: policy_pb2.CheckResponse,
        emit: Emit | None,
        held: HeldApprovals,
        turn: int,
    ) -> tuple[bool, str, dict[str, Any] | None]:
        found = await self._held_approval(ctx, record.tool_name, arguments, held)
        if found is not None:
            record.approval_id = found.approval_id
            edited_held = MessageToDict(found.edited_arguments) if found.HasField("edited_arguments") else None
            return True, found.note or "approved earlier", edited_held
        request = policy_pb2.RequestApprovalRequest(
            scope=ctx.scope,
            decision_id=decision.decision_id,
            tool_name=record.tool_name,
            arguments=arguments,
            session_id=ctx.session_id,
            run_id=ctx.run_id,
            reason=decision.reason,
        )
        approval = await self._approvals.request(ctx.scope, request, ctx.deadline)
        record.approval_id = approval.approval_id
        if emit is not None:
            emit(agent_pb2.RunStreamResponse(approval_pending=agent_pb2.ApprovalEvent(approval=approval)))
        if held.defer:
            await self._audit(ctx, record, turn, decision, "approval deferred to the caller", False)
            raise ApprovalRequired(record.tool_name, approval.approval_id)
        outcome = await self._approvals.wait(approval, ctx.deadline)
        if emit is not None:
            resolved = agent_pb2.ApprovalEvent(approval=outcome.approval)
            emit(agent_pb2.RunStreamResponse(approval_resolved=resolved))
        edited: dict[str, Any] | None = None
        if outcome.approved and outcome.approval.HasField("edited_arguments"):
            edited = MessageToDict(outcome.approval.edited_arguments)
        return outcome.approved, outcome.reason, edited

    async def _held_approval(
        self, ctx: RunContext, tool_name: str, arguments: struct_pb2.Struct, held: HeldApprovals
    ) -> policy_pb2.Approval | None:
        """An approval the caller holds for exactly this call: approved, same tool, same arguments."""
        deps = self._deps
        for approval_id in held.ids:
            if approval_id in held.used:
                continue
            request = policy_pb2.GetApprovalRequest(scope=ctx.scope, approval_id=approval_id)
            try:
                reply = await deps.policy.GetApproval(
                    request, metadata=deps.metadata, timeout=deps.timeout(ctx.deadline)
                )
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.NOT_FOUND:  # unknown, or another tenant's
                    continue
                raise dependency_error("policy", error) from None
            approval = reply.approval
            if (
                approval.status == policy_pb2.APPROVAL_STATUS_APPROVED
                and approval.tool_name == tool_name
                and approval.arguments == arguments
            ):
                held.used.add(approval_id)
                found: policy_pb2.Approval = approval
                return found
        return None

    async def _audit(
        self,
        ctx: RunContext,
        record: agent_pb2.ToolCallRecord,
        turn: int,
        decision: policy_pb2.CheckResponse,
        reason: str,
        allowed: bool,
    ) -> None:
        deps = self._deps
        payload = to_struct(
            {
                "turn": turn,
                "call_id": record.call_id,
                "tool": record.tool_name,
                "decision": policy_pb2.Decision.Name(record.decision),
                "policy_decision": policy_pb2.Decision.Name(decision.decision),
                "matched_rule": decision.matched_rule,
                "reason": reason,
                "approval_id": record.approval_id,
                "allowed": allowed,
            }
        )
        payload.fields["arguments"].struct_value.CopyFrom(record.arguments)
        request = audit_pb2.AppendRequest(
            scope=ctx.scope,
            session_id=ctx.session_id,
            run_id=ctx.run_id,
            actor="agent",
            action="tool_call",
            payload=payload,
            decision_id=record.decision_id,
        )
        try:
            await deps.audit.Append(request, metadata=deps.metadata, timeout=deps.timeout(ctx.deadline))
        except grpc.aio.AioRpcError as error:
            raise dependency_error("audit", error) from None

    async def gate(
        self,
        ctx: RunContext,
        call: ToolCall,
        tags: frozenset[str],
        turn: int,
        emit: Emit | None,
        held: HeldApprovals,
    ) -> tuple[agent_pb2.ToolCallRecord, ToolOutcome | None]:
        """The gate of a tool the caller runs: policy check, approval when ASK, write-ahead audit entry.

        Returns the call's record and, when it was denied, the outcome the run stops with;
        an allowed call is the caller's to run (the record says executed=False until its result comes).
        """
        record = agent_pb2.ToolCallRecord(call_id=call.id, tool_name=call.name)
        try:
            arguments = to_struct(call.arguments)
        except (ValueError, TypeError):
            arguments = struct_pb2.Struct()
        record.arguments.CopyFrom(arguments)
        decision = await self._check(ctx, call.name, arguments, sorted(tags))
        record.decision = decision.decision
        record.decision_id = decision.decision_id
        reason = decision.reason or decision.matched_rule
        if decision.decision == ASK:
            approved, reason, edited = await self._ask(ctx, record, arguments, decision, emit, held, turn)
            record.decision = ALLOW if approved else DENY
            if edited is not None:
                record.arguments.CopyFrom(to_struct(edited))
        allowed = record.decision == ALLOW
        await self._audit(ctx, record, turn, decision, reason, allowed)
        if not allowed:
            return record, self._result(record, f"denied: {reason or 'by policy'}", False, emit, denied=True)
        if emit is not None:
            emit(agent_pb2.RunStreamResponse(tool_call=record))
        return record, None
