"""The Agent client: run an agent for a tenant, whole or streamed.

    async with Agent("127.0.0.1:50051", token=alice_token) as agent:
        result = await agent.run("hello", user_id="alice", session_id="conv_42")
        async for event in agent.stream("and now?", user_id="alice"):
            ...

A run is not idempotent (it calls a model and charges a budget), so it is never
retried; a failure raises a typed :mod:`loomflow.client.errors` exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from loomflow.client._transport import Connection, TokenSource, scope
from loomflow.client.errors import from_rpc_error
from loomflow.client.policy import PolicyClient
from loomflow.client.tools import RunContext, Tool
from loomflow.v1 import agent_pb2, agent_pb2_grpc, budget_pb2, policy_pb2, tenancy_pb2

log = logging.getLogger("loomflow.client")

_SERVER_GRACE_S = 5.0
"""Extra gRPC deadline beyond a run's own timeout, so the server can answer "interrupted: timeout"."""


def _run_scope(user_id: str | None, anonymous: bool) -> tenancy_pb2.UserScope:
    """As the framework's ``agent.run(..., user_id=None)``: no user id is the anonymous partition."""
    return scope(None, True) if user_id is None else scope(user_id, anonymous)


def _name(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix).lower()


@dataclass(frozen=True)
class Usage:
    """What a run was charged (sum over its model turns)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cost_micros: int = 0
    wall_clock_ms: int = 0
    priced_as: str = ""

    @property
    def cost_usd(self) -> float:
        return self.cost_micros / 1_000_000

    @classmethod
    def from_proto(cls, charge: budget_pb2.Charge) -> Usage:
        return cls(
            charge.input_tokens,
            charge.output_tokens,
            charge.total_tokens,
            charge.cached_input_tokens,
            charge.cache_write_tokens,
            charge.cost_micros,
            charge.wall_clock_ms,
            charge.priced_as,
        )


@dataclass(frozen=True)
class ToolCall:
    call_id: str
    tool_name: str
    arguments: dict[str, Any]
    decision: str
    """``allow``, ``deny`` or ``ask`` (an ASK resolved by a human shows the final allow/deny)."""
    decision_id: str
    approval_id: str
    result: str
    """The tool's output, or why it did not run."""
    executed: bool

    @classmethod
    def from_proto(cls, record: agent_pb2.ToolCallRecord) -> ToolCall:
        return cls(
            record.call_id,
            record.tool_name,
            MessageToDict(record.arguments),
            _name(policy_pb2.Decision.Name(record.decision), "DECISION_"),
            record.decision_id,
            record.approval_id,
            record.result,
            record.executed,
        )


@dataclass(frozen=True)
class BudgetWarning:
    dimension: str
    window: str
    max: int
    applies_to: str
    fraction: float
    message: str

    @classmethod
    def from_proto(cls, warning: budget_pb2.BudgetWarning) -> BudgetWarning:
        limit = warning.limit
        return cls(
            _name(budget_pb2.Dimension.Name(limit.dimension), "DIMENSION_"),
            _name(budget_pb2.Window.Name(limit.window), "WINDOW_"),
            limit.max,
            warning.applies_to,
            warning.fraction,
            warning.message,
        )


@dataclass(frozen=True)
class Approval:
    approval_id: str
    user_id: str | None
    """None for the anonymous partition."""
    tool_name: str
    arguments: dict[str, Any]
    status: str
    """``pending``, ``approved``, ``denied`` or ``expired``."""
    reason: str
    note: str
    resolved_by: str
    decision_id: str
    run_id: str
    session_id: str

    @classmethod
    def from_proto(cls, approval: policy_pb2.Approval) -> Approval:
        return cls(
            approval.approval_id,
            approval.scope.user_id if approval.scope.WhichOneof("kind") == "user_id" else None,
            approval.tool_name,
            MessageToDict(approval.arguments),
            _name(policy_pb2.ApprovalStatus.Name(approval.status), "APPROVAL_STATUS_"),
            approval.reason,
            approval.note,
            approval.resolved_by,
            approval.decision_id,
            approval.run_id,
            approval.session_id,
        )


@dataclass(frozen=True)
class ApprovalAnswer:
    """What an ``approval_handler`` decides: approve, deny, or approve with edited arguments."""

    approved: bool
    edited_arguments: dict[str, Any] | None = None
    note: str = ""

    @classmethod
    def approve(cls, note: str = "") -> ApprovalAnswer:
        return cls(True, None, note)

    @classmethod
    def deny(cls, note: str = "") -> ApprovalAnswer:
        return cls(False, None, note)

    @classmethod
    def edit(cls, arguments: dict[str, Any], note: str = "") -> ApprovalAnswer:
        return cls(True, dict(arguments), note)


ApprovalHandler = Callable[["Approval"], "ApprovalAnswer | bool | Awaitable[ApprovalAnswer | bool]"]
"""Receives a pending approval of the live user_id (``approval.user_id``) and answers it."""


@dataclass(frozen=True)
class PendingToolCall:
    """A call of one of the caller's tools that a paused run waits for."""

    call_id: str
    tool_name: str
    arguments: dict[str, Any]
    decision_id: str
    approval_id: str


@dataclass(frozen=True)
class RunResult:
    run_id: str
    output: str
    turns: int
    usage: Usage
    interrupted: bool
    """True when the run stopped early: budget, max_turns, timeout or a denied tool call."""
    interruption_reason: str
    tool_calls: tuple[ToolCall, ...]
    warnings: tuple[BudgetWarning, ...]
    recalled_episode_ids: tuple[str, ...]
    history_episode_ids: tuple[str, ...] = ()
    """Earlier turns of the session the model was given (episode ids, oldest first)."""
    status: str = "completed"
    """completed, interrupted, or requires_action (the run waits for ``pending_tool_calls``)."""
    pending_tool_calls: tuple[PendingToolCall, ...] = ()
    expires_at: datetime.datetime | None = None
    """With requires_action: when the paused run expires."""

    @classmethod
    def from_proto(cls, reply: agent_pb2.RunResponse) -> RunResult:
        return cls(
            reply.run_id,
            reply.output,
            reply.turns,
            Usage.from_proto(reply.usage),
            reply.interrupted,
            reply.interruption_reason,
            tuple(ToolCall.from_proto(r) for r in reply.tool_calls),
            tuple(BudgetWarning.from_proto(w) for w in reply.warnings),
            tuple(reply.recalled_episode_ids),
            tuple(reply.history_episode_ids),
            _name(agent_pb2.RunStatus.Name(reply.status), "RUN_STATUS_") if reply.status else "completed",
            tuple(
                PendingToolCall(p.call_id, p.tool_name, MessageToDict(p.arguments), p.decision_id, p.approval_id)
                for p in reply.pending_tool_calls
            ),
            reply.expires_at.ToDatetime(datetime.UTC) if reply.HasField("expires_at") else None,
        )


@dataclass(frozen=True)
class TextDelta:
    turn: int
    text: str


@dataclass(frozen=True)
class ToolCallEvent:
    call: ToolCall


@dataclass(frozen=True)
class ApprovalPending:
    approval: Approval


@dataclass(frozen=True)
class ApprovalResolved:
    approval: Approval


@dataclass(frozen=True)
class BudgetWarningEvent:
    warning: BudgetWarning


@dataclass(frozen=True)
class Completed:
    """The last event of a stream."""

    result: RunResult


RunEvent = TextDelta | ToolCallEvent | ApprovalPending | ApprovalResolved | BudgetWarningEvent | Completed


def _event(message: agent_pb2.RunStreamResponse) -> RunEvent | None:
    kind = message.WhichOneof("event")
    if kind == "text":
        return TextDelta(message.text.turn, message.text.text)
    if kind == "tool_call":
        return ToolCallEvent(ToolCall.from_proto(message.tool_call))
    if kind == "approval_pending":
        return ApprovalPending(Approval.from_proto(message.approval_pending.approval))
    if kind == "approval_resolved":
        return ApprovalResolved(Approval.from_proto(message.approval_resolved.approval))
    if kind == "budget_warning":
        return BudgetWarningEvent(BudgetWarning.from_proto(message.budget_warning))
    if kind == "result":
        return Completed(RunResult.from_proto(message.result))
    return None  # an event kind newer than this client


class Agent:
    """Runs the agent for tenants. ``token``: the end user's JWT (its subject must be the user_id
    of every run), or an operator/service token; a callable is asked before each run."""

    def __init__(
        self,
        address: str | grpc.aio.Channel,
        *,
        token: TokenSource = None,
        timeout: float = 120.0,
        tls: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
        agent: str = "",
        tools: Iterable[Tool] = (),
        approval_handler: ApprovalHandler | None = None,
        approver: PolicyClient | None = None,
    ) -> None:
        self._connection = Connection(address, token=token, timeout=timeout, tls=tls, credentials=credentials)
        self.agent_name = agent
        """The named agent (PutAgent) runs use unless they name another; empty: the server's default."""
        self.tools = {t.name: t for t in tools}
        """Caller tools (see :func:`loomflow.client.tool`): declared on every run and run here."""
        if approval_handler is not None and approver is None:
            raise ValueError("an approval_handler needs an approver: a PolicyClient with an approver credential")
        self._approval_handler = approval_handler
        self._approver = approver
        self._stub = agent_pb2_grpc.AgentServiceStub(self._connection.channel)

    @staticmethod
    def _options(
        prompt: str,
        session_id: str,
        metadata: Mapping[str, str] | None,
        model: str,
        max_turns: int,
        timeout: float | None,
        recall_limit: int,
        defer_approvals: bool,
        approval_ids: Iterable[str],
    ) -> agent_pb2.RunOptions:
        return agent_pb2.RunOptions(
            prompt=prompt,
            session_id=session_id,
            metadata=dict(metadata or {}),
            model=model,
            max_turns=max_turns,
            timeout_ms=round(timeout * 1000) if timeout is not None else 0,
            recall_limit=recall_limit,
            defer_approvals=defer_approvals,
            approval_ids=list(approval_ids),
        )

    def _deadline(self, timeout_s: float | None) -> float:
        return self._connection.timeout if timeout_s is None else timeout_s + _SERVER_GRACE_S

    async def run(
        self,
        prompt: str,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        session_id: str = "",
        metadata: Mapping[str, str] | None = None,
        model: str = "",
        max_turns: int = 0,
        timeout_s: float | None = None,
        recall_limit: int = 0,
        defer_approvals: bool = False,
        approval_ids: Iterable[str] = (),
        agent: str | None = None,
    ) -> RunResult:
        """Runs to completion. ``timeout_s`` is the run's own limit, charged to the wall-clock
        budget; 0-valued options mean the server's defaults."""
        request = agent_pb2.RunRequest(
            scope=_run_scope(user_id, anonymous),
            options=self._options(
                prompt, session_id, metadata, model, max_turns, timeout_s, recall_limit, defer_approvals, approval_ids
            ),
        )
        request.options.agent = self.agent_name if agent is None else agent
        request.options.caller_tools.extend(t.declaration() for t in self.tools.values())
        async with self._answering_approvals(user_id, anonymous):
            reply = await self._connection.unary(
                self._stub.Run, request, idempotent=False, deadline_s=self._deadline(timeout_s)
            )
        result = RunResult.from_proto(reply)
        while result.status == "requires_action" and self._runs_all(result):
            context = RunContext(None if anonymous else user_id, session_id, result.run_id)  # None: anonymous
            results = [await self._call_tool(call, context) for call in result.pending_tool_calls]
            async with self._answering_approvals(user_id, anonymous):
                result = await self.continue_run(result.run_id, results, user_id=user_id, anonymous=anonymous)
        return result

    @contextlib.asynccontextmanager
    async def _answering_approvals(self, user_id: str | None, anonymous: bool) -> AsyncIterator[None]:
        """While a run is in flight, the ``approval_handler`` answers the user's pending approvals."""
        if self._approval_handler is None or self._approver is None:
            yield
            return
        # replay_pending: an approval created before the watch reaches the server is still answered.
        task = asyncio.create_task(self._answer_approvals(self._approver, self._approval_handler, user_id, anonymous))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @staticmethod
    async def _answer_approvals(
        approver: PolicyClient, handle: ApprovalHandler, user_id: str | None, anonymous: bool
    ) -> None:
        stream = approver.watch_approvals(user_id=user_id, anonymous=anonymous, replay_pending=True)
        async for raw in stream:
            approval = Approval.from_proto(raw)
            if approval.status != "pending":
                continue
            answer = handle(approval)
            if inspect.isawaitable(answer):
                answer = await answer
            if isinstance(answer, bool):
                answer = ApprovalAnswer(answer)
            await approver.resolve_approval(
                approval.approval_id,
                answer.approved,
                user_id=approval.user_id,
                anonymous=approval.user_id is None,
                edited_arguments=answer.edited_arguments,
                note=answer.note,
            )

    def _runs_all(self, result: RunResult) -> bool:
        return all(call.tool_name in self.tools for call in result.pending_tool_calls)

    async def _call_tool(self, call: PendingToolCall, context: RunContext) -> agent_pb2.ToolResult:
        try:
            output = await self.tools[call.tool_name].invoke(call.arguments, context)
        except Exception as error:  # noqa: BLE001  # the model reads a tool's failure, the run goes on
            log.info("caller tool %s failed: %s", call.tool_name, error)
            return agent_pb2.ToolResult(call_id=call.call_id, output=f"{type(error).__name__}: {error}", is_error=True)
        return agent_pb2.ToolResult(call_id=call.call_id, output=output)

    async def continue_run(
        self,
        run_id: str,
        results: Iterable[agent_pb2.ToolResult],
        *,
        user_id: str | None = None,
        anonymous: bool = False,
    ) -> RunResult:
        """Resumes a paused run with the results of its pending caller tool calls (one each)."""
        request = agent_pb2.ContinueRunRequest(
            scope=_run_scope(user_id, anonymous), run_id=run_id, results=list(results)
        )
        reply: agent_pb2.ContinueRunResponse = await self._connection.unary(
            self._stub.ContinueRun, request, idempotent=False
        )
        return RunResult.from_proto(reply.result)

    async def stream(
        self,
        prompt: str,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        session_id: str = "",
        metadata: Mapping[str, str] | None = None,
        model: str = "",
        max_turns: int = 0,
        timeout_s: float | None = None,
        recall_limit: int = 0,
        defer_approvals: bool = False,
        approval_ids: Iterable[str] = (),
        agent: str | None = None,
    ) -> AsyncIterator[RunEvent]:
        """Runs and yields events as they happen; the last one is :class:`Completed`."""
        request = agent_pb2.RunStreamRequest(
            scope=_run_scope(user_id, anonymous),
            options=self._options(
                prompt, session_id, metadata, model, max_turns, timeout_s, recall_limit, defer_approvals, approval_ids
            ),
        )
        request.options.agent = self.agent_name if agent is None else agent
        call = self._stub.RunStream(request, metadata=self._connection.metadata(), timeout=self._deadline(timeout_s))
        try:
            async for message in call:
                event = _event(message)
                if event is not None:
                    yield event
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    # -- agent definitions (operator credential) ---------------------------------

    async def put_agent(self, definition: agent_pb2.AgentDefinition) -> agent_pb2.AgentDefinition:
        """Creates or replaces a named agent; returns it with its new version."""
        request = agent_pb2.PutAgentRequest(scope=scope(None, True), agent=definition)
        reply: agent_pb2.PutAgentResponse = await self._connection.unary(self._stub.PutAgent, request, idempotent=True)
        return reply.agent

    async def get_agent(self, name: str) -> agent_pb2.AgentDefinition:
        request = agent_pb2.GetAgentRequest(scope=scope(None, True), name=name)
        reply: agent_pb2.GetAgentResponse = await self._connection.unary(self._stub.GetAgent, request, idempotent=True)
        return reply.agent

    async def list_agents(self, page_size: int = 0, page_token: str = "") -> agent_pb2.ListAgentsResponse:
        request = agent_pb2.ListAgentsRequest(scope=scope(None, True), page_size=page_size, page_token=page_token)
        reply: agent_pb2.ListAgentsResponse = await self._connection.unary(
            self._stub.ListAgents, request, idempotent=True
        )
        return reply

    async def delete_agent(self, name: str) -> int:
        """Deletes a named agent; returns the version deleted."""
        request = agent_pb2.DeleteAgentRequest(scope=scope(None, True), name=name)
        reply: agent_pb2.DeleteAgentResponse = await self._connection.unary(
            self._stub.DeleteAgent, request, idempotent=False
        )
        return reply.version

    # -- erasing and exporting a user (docs/erasure.md) ---------------------------

    async def forget_user(
        self, user_id: str | None = None, *, anonymous: bool = False, request_id: str = ""
    ) -> agent_pb2.Erasure:
        """Erases the user from every service (operator credential); the same ``request_id`` answers
        the same erasure, so retrying is safe. A pending erasure completes in the background."""
        request = agent_pb2.ForgetUserRequest(scope=scope(user_id, anonymous), request_id=request_id)
        reply: agent_pb2.ForgetUserResponse = await self._connection.unary(
            self._stub.ForgetUser, request, idempotent=bool(request_id)
        )
        return reply.erasure

    async def get_erasure(
        self, erasure_id: str, user_id: str | None = None, *, anonymous: bool = False
    ) -> agent_pb2.Erasure:
        """An erasure's progress and receipt (operator credential)."""
        request = agent_pb2.GetErasureRequest(scope=scope(user_id, anonymous), erasure_id=erasure_id)
        reply: agent_pb2.GetErasureResponse = await self._connection.unary(
            self._stub.GetErasure, request, idempotent=True
        )
        return reply.erasure

    async def export_user(self, user_id: str | None = None, *, anonymous: bool = False) -> bytes:
        """Everything the suite stores about the user, as one tar.gz (an operator, or the user's own token)."""
        request = agent_pb2.ExportUserRequest(scope=scope(user_id, anonymous))
        call = self._stub.ExportUser(request, metadata=self._connection.metadata(), timeout=self._connection.timeout)
        try:
            return b"".join([message.chunk async for message in call])
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None

    async def close(self) -> None:
        await self._connection.close()

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
