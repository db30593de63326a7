"""One run of the agent: the turn loop (DESIGN §4).

    recall ∥ reserve → model call → for each tool call: policy check (approval when
    ASK) → audit → tool → commit ∥ append ∥ remember   (last turn)
                       commit → reserve next ∥ append   (turns that called tools)

Independent calls run concurrently, so an echo turn costs two rounds of calls.
A run holds at most one reservation at a time; whatever ends the run early
(a dependency failing, the caller cancelling, its deadline) releases it, so no
hold outlives the run (and the reservation's TTL covers a crash of the Agent
itself). Each record the run writes (ledger charge, audit entry, episode) is a
single atomic call, so a failure never leaves a half-written record; the caller
then sees UNAVAILABLE or DEADLINE_EXCEEDED naming the dependency.

A run is interrupted, not failed, when it has done work and then hits the
budget, ``max_turns``, its timeout or a denial: the caller gets what it has.
A run the budget refuses before doing anything answers RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from loomflow.agent import metrics, paused
from loomflow.agent.context import RunContext
from loomflow.agent.definitions import (
    AgentDefinition,
    AgentDefinitions,
    TenantPolicies,
    from_stored_json,
    offered_tools,
    to_json,
)
from loomflow.agent.dependencies import Dependencies, dependency_error
from loomflow.agent.models.base import (
    MEMORIES_HEADER,
    Message,
    Model,
    ModelError,
    ModelRequest,
    ModelResponse,
    ToolCall,
    seed_text,
    tools_text,
)
from loomflow.agent.models.catalog import ModelCatalog
from loomflow.agent.models.retry import RetryPolicy, with_retries
from loomflow.agent.paused import Pauses, caller_specs
from loomflow.agent.seeding import Seed, SeedLimits, read_seed
from loomflow.agent.store import PausedRecord
from loomflow.agent.toolcalls import (
    ApprovalNotUsable,
    ApprovalRequired,
    Emit,
    HeldApprovals,
    ToolCaller,
    ToolOutcome,
    to_struct,
)
from loomflow.agent.tools.registry import ToolRegistry, ToolSpec
from loomflow.kernel import errors
from loomflow.kernel.tenancy import tenant_key
from loomflow.kernel.tracing import bind_run
from loomflow.v1 import agent_pb2, audit_pb2, budget_pb2, memory_pb2, tenancy_pb2

log = logging.getLogger("loomflow.agent")

_MAX_QUERY_CHARS = 65536
_MAX_EPISODE_CHARS = 1048576
_AUDIT_TEXT_CHARS = 4096
_TTL_MARGIN_MS = 5000  # a crashed Agent's hold outlives the run by this much at most


@dataclass(frozen=True)
class RunLimits:
    """Server defaults a run's options may override (0 in the options means these)."""

    max_turns: int = 8
    timeout_s: float = 60.0
    recall_limit: int = 5
    context_tokens: int = 512
    recall_min_similarity: float = -1.0
    """Below 0: the threshold tuned for the embedder Memory reports (RecallResponse.min_vector_similarity)."""
    max_output_tokens: int = 1024
    finish_grace_s: float = 1.0
    system_prompt: str = "You are a helpful assistant."
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    seed: SeedLimits = field(default_factory=SeedLimits)


def _memory_text(episode: memory_pb2.Episode) -> str:
    """One recalled episode on one line: what the user said, and the answer when it adds something."""
    said = " ".join(episode.input.split())
    answered = " ".join(episode.output.split())
    return said if not answered or answered == said else f"{said} → {answered}"


def _tool_outcome(outcome: ToolOutcome) -> str:
    if outcome.denied:
        return "denied"
    return "executed" if outcome.record.executed and not outcome.message.is_error else "failed"


class BudgetRefused(Exception):
    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


def _limit_of(error: grpc.aio.AioRpcError) -> str:
    """The ``limit`` a RESOURCE_EXHAUSTED status names in its ErrorInfo detail."""
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value if isinstance(value, bytes) else value.encode())
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return str(info.metadata.get("limit", ""))
    return ""


class Runner:
    """Runs turns for any tenant; holds no per-run state (one per Agent process)."""

    def __init__(
        self,
        deps: Dependencies,
        catalog: ModelCatalog,
        tools: ToolRegistry,
        caller: ToolCaller,
        limits: RunLimits,
        definitions: AgentDefinitions | None = None,
        pauses: Pauses | None = None,
    ) -> None:
        self.pauses = pauses
        self.deps = deps
        self.catalog = catalog
        self.tools = tools
        self.caller = caller
        self.limits = limits
        self.definitions = definitions
        self.policies: TenantPolicies | None = TenantPolicies(deps)
        self.tool_specs = tuple(tools.specs())
        self.tool_tags = {spec.name: tool.tags for spec in self.tool_specs if (tool := tools.get(spec.name))}
        self._tool_tokens: dict[tuple[str, tuple[str, ...]], int] = {}

    def tool_tokens(self, model: Model, specs: Sequence[ToolSpec] | None = None) -> int:
        """The tool definitions' share of every request's input, estimated once per model and tool set."""
        specs = self.tool_specs if specs is None else specs
        key = (model.name, tuple(s.name for s in specs))
        count = self._tool_tokens.get(key)
        if count is None:
            if len(self._tool_tokens) > 4096:
                self._tool_tokens.clear()
            count = self._tool_tokens[key] = model.estimate_tokens(tools_text(specs)) if specs else 0
        return count

    async def run(
        self,
        scope: tenancy_pb2.UserScope,
        options: agent_pb2.RunOptions,
        *,
        time_remaining: float | None = None,
        emit: Emit | None = None,
    ) -> agent_pb2.RunResponse:
        agent = await self.definitions.resolve(options.agent) if self.definitions is not None else None
        model = self.catalog.resolve(options.model or (agent.model if agent is not None else ""))
        run = _Run(self, scope, options, model, time_remaining, emit, agent)
        bind_run(run.ctx.tenant, options.session_id, run.run_id)  # span attributes, log fields, baggage downstream
        try:
            response = await run.execute()
        except BaseException:
            metrics.record_run(run.ctx.tenant, "failed")
            await run.release()
            raise
        metrics.record_run(run.ctx.tenant, "interrupted" if response.interrupted else "completed")
        return response

    async def resume(
        self,
        scope: tenancy_pb2.UserScope,
        run_id: str,
        results: Sequence[agent_pb2.ToolResult],
        *,
        time_remaining: float | None = None,
        emit: Emit | None = None,
    ) -> agent_pb2.RunResponse:
        """Resumes a paused run of this tenant with its caller's tool results (see agent/paused.py)."""
        pauses = self.pauses
        if pauses is None:
            raise errors.FailedPrecondition("this agent does not pause runs")
        tenant = tenant_key(scope)
        record = await pauses.store.get_paused(tenant, run_id)
        now = paused.now_micros()
        if record.status == "paused" and record.expires_at <= now:
            await pauses.sweeper.sweep()  # release its hold now rather than at the next sweep
        paused.check_resumable(record, now)
        state = paused.loads(record.state)
        paused.check_results(results, state["pending"], pauses.settings.max_result_chars)
        record = await pauses.store.take_paused(tenant, run_id)  # once: a concurrent resume gets NOT_FOUND
        agent = from_stored_json(state["agent"]) if state["agent"] else None
        options = paused.unpack(state["options"], agent_pb2.RunOptions)
        model = self.catalog.resolve(state["model"])
        run = _Run(self, paused.unpack(state["scope"], tenancy_pb2.UserScope), options, model, None, emit, agent)
        run._set_deadlines(float(state["work_left_s"]), time_remaining)
        run._restore(run_id, state, record.reservation_id)
        bind_run(tenant, options.session_id, run_id)
        try:
            response = await run.resume(results)
        except BaseException:
            metrics.record_run(tenant, "failed")
            await run.release()
            raise
        metrics.record_run(tenant, "interrupted" if response.interrupted else "completed")
        return response


class _Run:
    def __init__(
        self,
        runner: Runner,
        scope: tenancy_pb2.UserScope,
        options: agent_pb2.RunOptions,
        model: Model,
        time_remaining: float | None,
        emit: Emit | None,
        agent: AgentDefinition | None = None,
    ) -> None:
        limits = self.limits = agent.limits(runner.limits) if agent is not None else runner.limits
        self.agent = agent
        # The agent's allow-list; the tenant's policy narrows it further in _start.
        self.tool_specs = (
            runner.tool_specs if agent is None else tuple(s for s in runner.tool_specs if agent.allows(s.name))
        )
        self.allowed_names = frozenset(s.name for s in self.tool_specs)
        callers = caller_specs(options.caller_tools, frozenset(s.name for s in runner.tool_specs))
        self.caller_tags = {t.name: frozenset(t.tags) for t in options.caller_tools}
        self.tool_tags = {**runner.tool_tags, **self.caller_tags}
        self.tool_token_count = runner.tool_tokens(model, self.tool_specs)
        if callers:
            self.tool_token_count += model.estimate_tokens(tools_text(callers))
            self.tool_specs += callers
        self.paused_calls: list[agent_pb2.ToolCallRecord] = []
        self.runner = runner
        self.deps = runner.deps
        self.scope = scope
        self.options = options
        self.model = model
        self.emit = emit
        self.run_id = uuid.uuid4().hex
        self._set_deadlines(options.timeout_ms / 1000.0 if options.timeout_ms else limits.timeout_s, time_remaining)
        self.max_turns = options.max_turns or limits.max_turns
        self.recall_limit = options.recall_limit or limits.recall_limit
        self.ctx = RunContext(tenant_key(scope), options.session_id, self.run_id, scope, self.work_deadline, self.deps)
        self.messages: list[Message] = [Message("user", options.prompt)]
        self.memories: list[str] = []
        self.texts: list[str] = []
        self.charged = budget_pb2.Charge()
        self.records: list[agent_pb2.ToolCallRecord] = []
        self.warnings: dict[tuple[int, int, str], budget_pb2.BudgetWarning] = {}
        self.recalled_ids: list[str] = []
        self.seed = Seed([], [], [], [])
        self.reservation = ""
        self.interruption = ""
        self.turns = 0
        self.charged_until = self.started
        self.held = HeldApprovals(options.defer_approvals, tuple(options.approval_ids))

    def _set_deadlines(self, timeout: float, time_remaining: float | None) -> None:
        limits = self.limits
        self.started = time.monotonic()
        # Work (model, tools, approvals) stops at work_deadline, the run's own timeout; its records
        # are written in the grace period before the hard deadline.
        self.work_deadline = self.started + timeout
        self.deadline = self.work_deadline + limits.finish_grace_s
        if time_remaining is not None and time_remaining < timeout + limits.finish_grace_s:
            # The caller's deadline comes first: keep part of it (half, when short) for the writes,
            # so the caller still gets an answer.
            self.deadline = self.started + time_remaining
            grace = min(limits.finish_grace_s, time_remaining * 0.5)
            self.work_deadline = min(self.work_deadline, self.deadline - grace)

    # -- the loop ------------------------------------------------------------

    async def execute(self) -> agent_pb2.RunResponse:
        await self._start()
        return await self._loop()

    async def _loop(self) -> agent_pb2.RunResponse:
        while True:
            self.turns += 1
            turn = self.turns
            metrics.record_turn(self.ctx.tenant)
            # Wall clock is charged from where the last charge ended (the run's start for turn 1),
            # so the turns' charges add up to the run's time, recall and reservations included.
            turn_started = self.charged_until
            response: ModelResponse | None = None
            outcomes: list[ToolOutcome] = []
            try:
                async with asyncio.timeout_at(self.work_deadline):
                    response = await self._call_model(turn)
                    self.messages.append(Message("assistant", response.text, tuple(response.tool_calls)))
                    for call in response.tool_calls:
                        if call.name in self.caller_tags:  # the caller runs it: gate it, then pause
                            record, refused = await self.runner.caller.gate(
                                self.ctx, call, self.caller_tags[call.name], turn, self.emit, self.held
                            )
                            if refused is None:
                                self.records.append(record)
                                self.paused_calls.append(record)
                                continue
                            outcome = refused
                        else:
                            outcome = await self.runner.caller.call(
                                self.ctx, call, turn, self.emit, self.held, self.allowed_names
                            )
                        outcomes.append(outcome)
                        self.records.append(outcome.record)
                        metrics.record_tool_call(self.ctx.tenant, _tool_outcome(outcome))
                        if outcome.denied:
                            self._interrupt(f"denied: {call.name}: {outcome.record.result.removeprefix('denied: ')}")
                            break
            except TimeoutError:
                timeout_ms = round((self.work_deadline - self.started) * 1000)
                self._interrupt(f"timeout: the run took longer than {timeout_ms} ms")
            except (ApprovalRequired, ApprovalNotUsable):
                # The caller will resume in a new run (or was refused an approval it presented):
                # settle this turn, then tell it which approval to get, or why it could not be used.
                actual = self._actual(response, turn_started)
                entry = self._turn_entry(turn, response, outcomes, actual, last=False)
                await self._all(self._commit(actual), self._append(entry))
                raise
            if response is not None and response.text:
                self.texts.append(response.text)
            self.messages.extend(o.message for o in outcomes)
            actual = self._actual(response, turn_started)
            calls = response.tool_calls if response is not None else []
            last = bool(self.interruption) or not calls
            if not last and turn >= self.max_turns:
                self._interrupt(f"max_turns: stopped after {turn} turns")
                last = True
            entry = self._turn_entry(turn, response, outcomes, actual, last)
            if last:
                await self._all(self._commit(actual), self._append(entry), self._remember())
                return self._response()
            appended = asyncio.ensure_future(self._append(entry))
            pause = bool(self.paused_calls) and self.runner.pauses is not None
            try:
                await self._commit(actual)
                hold_s = self.runner.pauses.settings.ttl_s if pause and self.runner.pauses else 0.0
                await self._reserve(turn + 1, self._estimate_next(), hold_s=hold_s)
            except BudgetRefused as refused:
                await appended
                return await self._end_on_budget(refused)
            except BaseException:
                appended.cancel()
                raise
            await appended
            if pause:
                return await self._pause()

    async def _end_on_budget(self, refused: BudgetRefused) -> agent_pb2.RunResponse:
        self._interrupt(f"budget: {str(refused).removeprefix('budget exceeded: ')}")
        ended = self._entry("run_interrupted", {"reason": self.interruption, "output": self._output()})
        await self._all(self._append(ended), self._remember())
        return self._response()

    # -- pausing for the caller's tools (see agent/paused.py) ------------------

    async def _pause(self) -> agent_pb2.RunResponse:
        """Stores the run with its hold and answers REQUIRES_ACTION; any replica resumes it."""
        pauses = self.runner.pauses
        assert pauses is not None
        now = paused.now_micros()
        expires_at = now + round(pauses.settings.ttl_s * 1_000_000)
        started_at = now - round((time.monotonic() - self.started) * 1_000_000)  # checked against ForgetUser
        record = PausedRecord(
            self.ctx.tenant,
            self.run_id,
            paused.dumps(self._state()),
            self.reservation,
            expires_at,
            started_at=started_at,
        )
        await pauses.store.pause(record, now, pauses.settings.max_per_tenant)  # a refusal: run() releases the hold
        self.reservation = ""  # the stored run holds it now (the sweeper releases it at expiry)
        response = self._response()
        response.status = agent_pb2.RUN_STATUS_REQUIRES_ACTION
        for call in self.paused_calls:
            response.pending_tool_calls.add(
                call_id=call.call_id,
                tool_name=call.tool_name,
                arguments=call.arguments,
                decision_id=call.decision_id,
                approval_id=call.approval_id,
            )
        response.expires_at.FromMicroseconds(expires_at)
        return response

    def _state(self) -> dict[str, Any]:
        return {
            "options": paused.pack(self.options),
            "scope": paused.pack(self.scope),
            "model": self.model.name,
            "agent": to_json(self.agent) if self.agent is not None else None,
            "turns": self.turns,
            "work_left_s": max(0.0, self.work_deadline - time.monotonic()),
            "messages": [paused.message_dict(m) for m in self.messages],
            "memories": self.memories,
            "texts": self.texts,
            "charged": paused.pack(self.charged),
            "records": [paused.pack(r) for r in self.records],
            "warnings": [paused.pack(w) for w in self.warnings.values()],
            "recalled_ids": self.recalled_ids,
            "seed": {
                "history": [paused.message_dict(m) for m in self.seed.history],
                "ids": self.seed.history_episode_ids,
                "blocks": self.seed.blocks,
                "facts": self.seed.facts,
            },
            "offered": [s.name for s in self.tool_specs if s.name not in self.caller_tags],
            "held": {"defer": self.held.defer, "ids": list(self.held.ids), "used": sorted(self.held.used)},
            "pending": [c.call_id for c in self.paused_calls],
        }

    def _restore(self, run_id: str, state: dict[str, Any], reservation: str) -> None:
        self.run_id = run_id
        self.ctx = RunContext(
            self.ctx.tenant, self.options.session_id, run_id, self.scope, self.work_deadline, self.deps
        )
        self.turns = int(state["turns"])
        self.messages = [paused.message_from(m) for m in state["messages"]]
        self.memories = list(state["memories"])
        self.texts = list(state["texts"])
        self.charged = paused.unpack(state["charged"], budget_pb2.Charge)
        self.records = [paused.unpack(r, agent_pb2.ToolCallRecord) for r in state["records"]]
        for warning in (paused.unpack(w, budget_pb2.BudgetWarning) for w in state["warnings"]):
            self.warnings[(warning.limit.dimension, warning.limit.window, warning.applies_to)] = warning
        self.recalled_ids = list(state["recalled_ids"])
        seed = state["seed"]
        history = [paused.message_from(m) for m in seed["history"]]
        self.seed = Seed(history, list(seed["ids"]), [(b[0], b[1]) for b in seed["blocks"]], list(seed["facts"]))
        offered = set(state["offered"])
        self.tool_specs = tuple(s for s in self.tool_specs if s.name in offered or s.name in self.caller_tags)
        held = state["held"]
        self.held = HeldApprovals(bool(held["defer"]), tuple(held["ids"]), set(held["used"]))
        self.reservation = reservation

    async def resume(self, results: Sequence[agent_pb2.ToolResult]) -> agent_pb2.RunResponse:
        """Hands the caller's results to the model and goes on; results count as input tokens."""
        by_id = {r.call_id: r for r in results}
        for record in self.records:
            result = by_id.get(record.call_id)
            if result is None:
                continue
            record.result = result.output
            record.executed = not result.is_error
            self.messages.append(
                Message(
                    "tool",
                    result.output,
                    tool_call_id=record.call_id,
                    tool_name=record.tool_name,
                    is_error=result.is_error,
                )
            )
            if self.emit is not None:
                self.emit(agent_pb2.RunStreamResponse(tool_call=record))
        received = [{"call_id": r.call_id, "chars": len(r.output), "is_error": r.is_error} for r in results]
        appended = asyncio.ensure_future(self._append(self._entry("tool_results", {"results": received})))
        held, self.reservation = self.reservation, ""
        try:
            await self._reserve(self.turns + 1, self._estimate_next(), suffix=".resumed")
        except BudgetRefused as refused:
            self.reservation = held
            await self.release()
            await appended
            return await self._end_on_budget(refused)
        except BaseException:
            self.reservation = self.reservation or held
            appended.cancel()
            raise
        stale, self.reservation = self.reservation, held  # release the paused hold, keep the new one
        await self.release()
        self.reservation = stale
        await appended
        return await self._loop()

    async def _start(self) -> None:
        limits = self.limits
        # Counted apart (never fewer tokens than together), so the system prompt's count is reused.
        model = self.model
        estimate = model.estimate_tokens(limits.system_prompt) + model.estimate_tokens(self.options.prompt)
        estimate += self.tool_token_count + limits.seed.reserved_tokens(self.options.session_id)
        seed = read_seed(
            self.deps,
            self.scope,
            self.options.session_id,
            self.options.prompt,
            limits.seed,
            model.estimate_tokens,
            self.deadline,
        )
        offer = self._narrow_offer()
        if self.recall_limit <= 0:
            reserved, seeded, offered = await asyncio.gather(
                self._first_reserve(estimate), seed, offer, return_exceptions=True
            )
            self._use_seed(reserved, seeded, offered)
            return
        recall = self.deps.memory.Recall(
            memory_pb2.RecallRequest(
                scope=self.scope,
                query=self.options.prompt[:_MAX_QUERY_CHARS],
                limit=self.recall_limit,
                exclude_session_id=self.options.session_id,  # this session's turns come as history
            ),
            metadata=self.deps.metadata,
            timeout=self.deps.timeout(self.deadline),
        )
        reserved, recalled, seeded, offered = await asyncio.gather(
            self._first_reserve(estimate + limits.context_tokens), recall, seed, offer, return_exceptions=True
        )
        self._use_seed(reserved, seeded, offered)
        if isinstance(recalled, grpc.aio.AioRpcError):
            raise dependency_error("memory", recalled) from None
        if isinstance(recalled, BaseException):
            raise recalled
        self._use_memories(recalled.hits, recalled.min_vector_similarity)

    def _use_seed(self, reserved: object, seeded: Seed | BaseException, offered: object) -> None:
        # Any failure ends the run; a reservation that did succeed is released by run().
        for result in (reserved, seeded, offered):
            if isinstance(result, BaseException):
                raise result
        assert isinstance(seeded, Seed)
        self.seed = seeded

    async def _narrow_offer(self) -> None:
        """Drops the tools the tenant's policy denies outright: the model is never offered what it may not call.

        The reservation counted the agent's whole allow-list, so it still covers the smaller offer.
        """
        policies = self.runner.policies
        if not self.tool_specs or policies is None:
            return
        policy = await policies.get(self.ctx.tenant, self.scope, self.deadline)
        # Only the offer narrows: a call the model makes anyway to a tool its agent allows still
        # goes through the policy check, which denies it and audits the denial.
        self.tool_specs = offered_tools(self.tool_specs, self.tool_tags, policy)

    async def _first_reserve(self, estimate: int) -> None:
        try:
            await self._reserve(1, estimate)
        except BudgetRefused as refused:
            raise errors.ResourceExhausted(str(refused), limit=refused.limit) from None

    def _use_memories(self, hits: Sequence[memory_pb2.RecallHit], embedder_threshold: float) -> None:
        """Relevant recalled episodes as context, within ``context_tokens`` (so the reservation holds).

        Recall ranks every episode of the tenant; a hit sharing no word with the
        prompt and barely similar to it is noise, not memory, and is left out.
        """
        limits = self.limits
        # The header and each line's prefix are part of what the model reads, so part of the room.
        room = limits.context_tokens - self.model.estimate_tokens(MEMORIES_HEADER)
        threshold = limits.recall_min_similarity
        if threshold < 0:  # each embedder's cosines have their own scale: Memory says where noise starts
            threshold = embedder_threshold
        for hit in hits:
            if hit.lexical_score <= 0 and hit.vector_score < threshold:
                continue
            text = _memory_text(hit.episode)
            tokens = self._memory_tokens(text)
            if tokens > room:
                continue
            room -= tokens
            self.memories.append(text)
            self.recalled_ids.append(hit.episode.id)

    async def _call_model(self, turn: int) -> ModelResponse:
        limits = self.limits
        request = ModelRequest(
            system=limits.system_prompt,
            messages=tuple(self.messages),
            tools=self.tool_specs,
            max_output_tokens=limits.max_output_tokens,
            memories=tuple(self.memories),
            history=tuple(self.seed.history),
            blocks=tuple(self.seed.blocks),
            facts=tuple(self.seed.facts),
        )
        emit = self.emit
        streamed = False
        on_text = None
        if emit is not None:

            def on_text(chunk: str) -> None:
                nonlocal streamed
                streamed = True
                emit(agent_pb2.RunStreamResponse(text=agent_pb2.TextDelta(turn=turn, text=chunk)))

        started = time.perf_counter()
        try:
            response = await with_retries(
                lambda: self.model.complete(request, on_text),
                limits.retry,
                self.work_deadline,
                can_retry=lambda: not streamed,
            )
        except ModelError as error:
            if error.transient:
                raise errors.Unavailable(f"model {self.model.name} unavailable: {error}") from None
            raise errors.FailedPrecondition(f"model {self.model.name} refused the request: {error}") from None
        finally:
            metrics.record_model_call(self.ctx.tenant, self.model.name, started)
        if "\x00" in response.text:  # not storable in every backend the run writes to
            response.text = response.text.replace("\x00", "")
        return response

    # -- budget --------------------------------------------------------------

    async def _reserve(self, turn: int, input_estimate: int, *, hold_s: float = 0.0, suffix: str = "") -> None:
        limits = self.limits
        remaining_ms = max(0, round((self.work_deadline - time.monotonic()) * 1000))
        request = budget_pb2.ReserveRequest(
            scope=self.scope,
            call_id=f"{self.run_id}.{turn}{suffix}",
            model=self.model.name,
            estimate=budget_pb2.Usage(
                input_tokens=input_estimate,
                output_tokens=limits.max_output_tokens,
                wall_clock_ms=remaining_ms,
            ),
            ttl_ms=min(86_400_000, max(1, round((self.deadline - time.monotonic() + hold_s) * 1000)) + _TTL_MARGIN_MS),
            run_id=self.run_id,
        )
        deps = self.deps
        try:
            reply = await deps.budget.Reserve(request, metadata=deps.metadata, timeout=deps.timeout(self.deadline))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise BudgetRefused(error.details() or "budget exhausted", _limit_of(error)) from None
            raise dependency_error("budget", error) from None
        self.reservation = reply.reservation_id
        self._warn(reply.warnings)

    def _memory_tokens(self, text: str) -> int:
        return self.model.estimate_tokens("- ") + self.model.estimate_tokens(text)

    def _estimate_next(self) -> int:
        """The next request's input as the model will read it, counted part by part (never fewer tokens
        than together): system prompt, tools, memories with their header, the seeded blocks, facts and
        history, every message and tool call."""
        model = self.model
        estimate = model.estimate_tokens(self.limits.system_prompt) + self.tool_token_count
        if self.memories:
            estimate += model.estimate_tokens(MEMORIES_HEADER) + sum(map(self._memory_tokens, self.memories))
        seeded = seed_text(self.seed.blocks, self.seed.facts)
        if seeded:
            estimate += model.estimate_tokens(seeded)
        for m in (*self.seed.history, *self.messages):
            estimate += model.estimate_tokens(m.content)
            for c in m.tool_calls:
                arguments = json.dumps(c.arguments, sort_keys=True)
                estimate += model.estimate_tokens(c.name) + model.estimate_tokens(arguments)
        return estimate

    def _actual(self, response: ModelResponse | None, turn_started: float) -> budget_pb2.Usage:
        self.charged_until = time.monotonic()
        wall_ms = max(0, round((self.charged_until - turn_started) * 1000))
        if response is None:  # timed out inside the model call: only the time is known
            return budget_pb2.Usage(wall_clock_ms=wall_ms)
        u = response.usage
        return budget_pb2.Usage(
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cached_input_tokens=u.cached_input_tokens,
            cache_write_tokens=u.cache_write_tokens,
            wall_clock_ms=wall_ms,
        )

    async def _commit(self, actual: budget_pb2.Usage) -> None:
        deps = self.deps
        request = budget_pb2.CommitRequest(scope=self.scope, reservation_id=self.reservation, actual=actual)
        try:
            reply = await deps.budget.Commit(request, metadata=deps.metadata, timeout=deps.timeout(self.deadline))
        except grpc.aio.AioRpcError as error:
            raise dependency_error("budget", error) from None
        self.reservation = ""
        c, charged = self.charged, reply.charged
        c.input_tokens += charged.input_tokens
        c.output_tokens += charged.output_tokens
        c.total_tokens += charged.total_tokens
        c.cached_input_tokens += charged.cached_input_tokens
        c.cache_write_tokens += charged.cache_write_tokens
        c.cost_micros += charged.cost_micros
        c.wall_clock_ms += charged.wall_clock_ms
        if charged.priced_as:
            c.priced_as = charged.priced_as
        self._warn(reply.warnings)

    async def release(self) -> None:
        """Returns the outstanding hold, if any; shielded so a cancelled run still releases."""
        reservation, self.reservation = self.reservation, ""
        if not reservation:
            return
        deps = self.deps
        request = budget_pb2.ReleaseRequest(scope=self.scope, reservation_id=reservation)
        try:
            await asyncio.shield(
                deps.budget.Release(request, metadata=deps.metadata, timeout=min(2.0, deps.call_timeout_s))
            )
        except grpc.aio.AioRpcError as error:  # the reservation's TTL returns the hold instead
            log.warning("could not release reservation %s (its TTL will): %s", reservation, error)

    def _warn(self, warnings: Sequence[budget_pb2.BudgetWarning]) -> None:
        for warning in warnings:
            key = (warning.limit.dimension, warning.limit.window, warning.applies_to)
            if key in self.warnings:
                continue
            self.warnings[key] = warning
            if self.emit is not None:
                self.emit(agent_pb2.RunStreamResponse(budget_warning=warning))

    # -- records -------------------------------------------------------------

    def _entry(self, action: str, payload: dict[str, Any]) -> audit_pb2.AppendRequest:
        return audit_pb2.AppendRequest(
            scope=self.scope,
            session_id=self.options.session_id,
            run_id=self.run_id,
            actor="agent",
            action=action,
            payload=to_struct(payload),
        )

    def _turn_entry(
        self,
        turn: int,
        response: ModelResponse | None,
        outcomes: list[ToolOutcome],
        actual: budget_pb2.Usage,
        last: bool,
    ) -> audit_pb2.AppendRequest:
        payload: dict[str, Any] = {
            "turn": turn,
            "model": self.model.name,
            "input_tokens": actual.input_tokens,
            "output_tokens": actual.output_tokens,
            "cached_input_tokens": actual.cached_input_tokens,
            "wall_clock_ms": actual.wall_clock_ms,
            "stop_reason": response.stop_reason if response is not None else "timeout",
        }
        if turn == 1:
            payload["prompt"] = self.options.prompt[:_AUDIT_TEXT_CHARS]
            payload["recalled_episode_ids"] = list(self.recalled_ids)
            if self.seed.history_episode_ids:
                payload["history_episode_ids"] = list(self.seed.history_episode_ids)
        if outcomes:
            payload["tool_results"] = [
                {
                    "call_id": o.record.call_id,
                    "tool": o.record.tool_name,
                    "decision_id": o.record.decision_id,
                    "executed": o.record.executed,
                    "result": o.record.result[:_AUDIT_TEXT_CHARS],
                }
                for o in outcomes
            ]
        if last:
            payload["final"] = True
            payload["output"] = self._output()[:_AUDIT_TEXT_CHARS]
            payload["interrupted"] = bool(self.interruption)
            payload["interruption_reason"] = self.interruption
        return self._entry("model_call", payload)

    async def _append(self, entry: audit_pb2.AppendRequest) -> None:
        deps = self.deps
        try:
            await deps.audit.Append(entry, metadata=deps.metadata, timeout=deps.timeout(self.deadline))
        except grpc.aio.AioRpcError as error:
            raise dependency_error("audit", error) from None

    async def _remember(self) -> None:
        deps = self.deps
        request = memory_pb2.RememberRequest(
            scope=self.scope,
            session_id=self.options.session_id,
            input=self.options.prompt,
            output=self._output()[:_MAX_EPISODE_CHARS],
            metadata=self.options.metadata,
            run_id=self.run_id,
        )
        try:
            await deps.memory.Remember(request, metadata=deps.metadata, timeout=deps.timeout(self.deadline))
        except grpc.aio.AioRpcError as error:
            raise dependency_error("memory", error) from None

    @staticmethod
    async def _all(*calls: Awaitable[None]) -> None:
        """Runs independent writes concurrently; the first failure (in order) is raised after all settle."""
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # -- the answer ----------------------------------------------------------

    def _interrupt(self, reason: str) -> None:
        if not self.interruption:
            self.interruption = reason

    def _output(self) -> str:
        return "\n".join(self.texts)

    def _response(self) -> agent_pb2.RunResponse:
        return agent_pb2.RunResponse(
            run_id=self.run_id,
            output=self._output(),
            turns=self.turns,
            usage=self.charged,
            interrupted=bool(self.interruption),
            interruption_reason=self.interruption,
            tool_calls=self.records,
            warnings=list(self.warnings.values()),
            recalled_episode_ids=self.recalled_ids,
            history_episode_ids=self.seed.history_episode_ids,
            status=agent_pb2.RUN_STATUS_INTERRUPTED if self.interruption else agent_pb2.RUN_STATUS_COMPLETED,
        )


__all__ = ["BudgetRefused", "RunLimits", "Runner", "ToolCall"]
