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
from google.rpc import error_details_pb2, status_pb2

from loomflow.agent.approvals import ApprovalWaiter
from loomflow.agent.context import RunContext, bound_run_context
from loomflow.agent.dependencies import Dependencies, dependency_error
from loomflow.agent.models.base import Message, ToolCall
from loomflow.agent.tools.registry import Tool, ToolArgumentError, ToolRegistry
from loomflow.agent.tools.workers import ToolFailed, ToolWorkerError, ToolWorkers
from loomflow.kernel.errors import FailedPrecondition, ServiceError
from loomflow.kernel.jsondepth import MAX_JSON_DEPTH, depth_limit_message, json_depth
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


class ApprovalNotUsable(FailedPrecondition):
    """The caller presented an approval that Policy refused to let this call use (already used,
    or asked for another tool, arguments or run): the run ends, audited, and says why."""

    def __init__(self, tool_name: str, approval_id: str, why: str, message: str) -> None:
        super().__init__(f"tool {tool_name}: {message}")
        self.approval_id = approval_id
        self.why = why

    def details(self) -> list[any_pb2.Any]:
        info = error_details_pb2.ErrorInfo(
            reason="APPROVAL_NOT_USABLE", domain="loomflow", metadata={"approval_id": self.approval_id, "why": self.why}
        )
        packed = any_pb2.Any()
        packed.Pack(info)
        return [packed]


def _refusal_why(error: grpc.aio.AioRpcError) -> str:
    """The ``why`` of Policy's APPROVAL_NOT_USABLE ErrorInfo, read from the status details."""
    raw = next((v for k, v in (error.trailing_metadata() or ()) if k == "grpc-status-details-bin"), None)
    if raw is None:
        return "not_usable"
    status = status_pb2.Status.FromString(raw if isinstance(raw, bytes) else raw.encode())
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.reason == "APPROVAL_NOT_USABLE":
            return str(info.metadata.get("why", "not_usable"))
    return "not_usable"


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
        self,
        deps: Dependencies,
        tools: ToolRegistry,
        approvals: ApprovalWaiter,
        max_result_chars: int,
        *,
        workers: ToolWorkers | None = None,
        tool_timeout_s: float = 10.0,
    ) -> None:
        self._deps = deps
        self._tools = tools
        self._approvals = approvals
        self._max_result_chars = max_result_chars
        self._workers = workers
        self._tool_timeout_s = tool_timeout_s

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
        depth = json_depth(call.arguments)
        if depth > MAX_JSON_DEPTH:
            # No service would accept them (nor should the tool see them): the model reads why, nothing runs.
            return self._result(record, f"error: {call.name}: arguments {depth_limit_message(depth)}", False, emit)
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
        # The call's own deadline: the tool's limit (or the Agent's default), never past the run's.
        timeout = min(tool.timeout_s or self._tool_timeout_s, ctx.remaining())
        try:
            with bound_run_context(ctx):
                text = await self._invoke(tool, run_arguments, ctx, timeout)
        except ToolArgumentError as error:
            return self._result(record, f"error: {error}", False, emit)
        except TimeoutError:
            return self._result(record, f"error: {call.name} timed out after {timeout:.3g} s", True, emit)
        except ToolWorkerError as error:
            return self._result(record, f"error: {call.name}: {error}", True, emit)
        except ToolFailed as error:
            return self._result(record, f"error: {error.kind}: {error}", True, emit)
        except ServiceError as error:
            return self._result(record, f"error: {error.message}", True, emit)
        except Exception as error:  # noqa: BLE001  # a tool's failure is the model's to read, not the run's end
            log.info("tool %s failed: %s", call.name, error)
            return self._result(record, f"error: {type(error).__name__}: {error}", True, emit)
        return self._result(record, text, True, emit)

    async def _invoke(self, tool: Tool, arguments: dict[str, Any], ctx: RunContext, limit_s: float) -> str:
        """A synchronous tool runs in a killable worker process; an async one on the loop, cancelled at
        its deadline."""
        if tool.blocking and self._workers is not None:
            module, name = tool.import_path()
            return await self._workers.run(module, name, tool.bind(arguments), ctx, limit_s)
        async with asyncio.timeout(limit_s):
            return await tool.invoke(arguments)

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
        held_id = await self._held_approval(ctx, record.tool_name, arguments, held)
        if held_id:
            record.approval_id = held_id
            try:
                found = await self._consume(ctx, held_id, record.tool_name, arguments)
            except ApprovalNotUsable as refused:
                # A replayed or misdirected approval: the record says so before the run ends.
                await self._audit_refused(ctx, record, turn, decision, refused)
                raise
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
            deferred=held.defer,
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
        if not outcome.approved:
            return False, outcome.reason, None
        try:
            # Used once, by this run: the same approval cannot let a later run act again.
            used = await self._consume(ctx, approval.approval_id, record.tool_name, arguments)
        except ApprovalNotUsable as refused:
            await self._audit_refused(ctx, record, turn, decision, refused)
            return False, f"approval could not be used: {refused.message}", None
        edited = MessageToDict(used.edited_arguments) if used.HasField("edited_arguments") else None
        return True, outcome.reason, edited

    async def _consume(
        self, ctx: RunContext, approval_id: str, tool_name: str, arguments: struct_pb2.Struct
    ) -> policy_pb2.Approval:
        """Uses the approval for this call, once (Policy's compare-and-set); ApprovalNotUsable if refused."""
        deps = self._deps
        request = policy_pb2.ConsumeApprovalRequest(
            scope=ctx.scope, approval_id=approval_id, tool_name=tool_name, arguments=arguments, run_id=ctx.run_id
        )
        try:
            reply = await deps.policy.ConsumeApproval(
                request, metadata=deps.metadata, timeout=deps.timeout(ctx.deadline)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise ApprovalNotUsable(tool_name, approval_id, _refusal_why(error), error.details() or "") from None
            raise dependency_error("policy", error) from None
        approval: policy_pb2.Approval = reply.approval
        return approval

    async def _held_approval(
        self, ctx: RunContext, tool_name: str, arguments: struct_pb2.Struct, held: HeldApprovals
    ) -> str:
        """The id of an approval the caller holds for exactly this call (approved, same tool, same
        arguments), or "". Whether it may still be used is Policy's to say when it is consumed."""
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
                return approval_id
        return ""

    async def _audit_refused(
        self,
        ctx: RunContext,
        record: agent_pb2.ToolCallRecord,
        turn: int,
        decision: policy_pb2.CheckResponse,
        refused: ApprovalNotUsable,
    ) -> None:
        log.warning(
            "approval %s refused for %s in run %s: %s", refused.approval_id, record.tool_name, ctx.run_id, refused.why
        )
        payload = {
            "turn": turn,
            "call_id": record.call_id,
            "tool": record.tool_name,
            "approval_id": refused.approval_id,
            "why": refused.why,
            "reason": refused.message,
        }
        await self._append(ctx, "approval_reuse_refused", payload, record.arguments, decision.decision_id)

    async def _audit(
        self,
        ctx: RunContext,
        record: agent_pb2.ToolCallRecord,
        turn: int,
        decision: policy_pb2.CheckResponse,
        reason: str,
        allowed: bool,
    ) -> None:
        payload = {
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
        await self._append(ctx, "tool_call", payload, record.arguments, record.decision_id)

    async def _append(
        self,
        ctx: RunContext,
        action: str,
        fields: dict[str, Any],
        arguments: struct_pb2.Struct,
        decision_id: str,
    ) -> None:
        deps = self._deps
        payload = to_struct(fields)
        payload.fields["arguments"].struct_value.CopyFrom(arguments)
        request = audit_pb2.AppendRequest(
            scope=ctx.scope,
            session_id=ctx.session_id,
            run_id=ctx.run_id,
            actor="agent",
            action=action,
            payload=payload,
            decision_id=decision_id,
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
