"""The turn loop of one run (DESIGN §4).

    context ∥ reserve → model call → for each tool call: policy check (approval when
    ASK) → audit → tool → commit ∥ append ∥ remember   (last turn)
                        commit → reserve next ∥ append   (turns that called tools)

Independent calls run concurrently, so an echo turn costs two rounds of calls; the
first round asks Memory once (GetContext: recall, history, blocks, facts; see
:mod:`loomflow.agent.seeding`). The budget side lives in :mod:`.settlement`, the audit
entries in :mod:`.journal`, the memories kept in :mod:`.memories`, pausing for the
caller's tools in :mod:`.pausing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING

from loomflow.agent import metrics
from loomflow.agent.context import RunContext
from loomflow.agent.definitions import AgentDefinition, offered_tools
from loomflow.agent.models.base import (
    MEMORIES_HEADER,
    Message,
    Model,
    ModelError,
    ModelRequest,
    ModelResponse,
    seed_text,
    tools_text,
)
from loomflow.agent.models.retry import with_retries
from loomflow.agent.paused import caller_specs
from loomflow.agent.run import memories, pausing
from loomflow.agent.run.journal import Journal
from loomflow.agent.run.limits import Deadlines
from loomflow.agent.run.settlement import BudgetRefused, Settlement
from loomflow.agent.seeding import Seed, context_request, read_context, seed_from
from loomflow.agent.toolcalls import ApprovalNotUsable, ApprovalRequired, Emit, HeldApprovals, ToolOutcome
from loomflow.kernel import errors
from loomflow.kernel.tenancy import tenant_key
from loomflow.v1 import agent_pb2, audit_pb2, budget_pb2, memory_pb2, tenancy_pb2

if TYPE_CHECKING:
    from loomflow.agent.runner import Runner


def _tool_outcome(outcome: ToolOutcome) -> str:
    if outcome.denied:
        return "denied"
    return "executed" if outcome.record.executed and not outcome.message.is_error else "failed"


async def _all(*calls: Awaitable[None]) -> None:
    """Runs independent writes concurrently; the first failure (in order) is raised after all settle."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


class Run:
    """One run's state and its turns; a resumed run is built with the paused run's id and time left."""

    def __init__(
        self,
        runner: Runner,
        scope: tenancy_pb2.UserScope,
        options: agent_pb2.RunOptions,
        model: Model,
        time_remaining: float | None,
        emit: Emit | None,
        agent: AgentDefinition | None = None,
        *,
        run_id: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.agent = agent
        # The agent's allow-list; the tenant's policy narrows it further in _start.
        limits, self.tool_specs = (runner.limits, runner.tool_specs) if agent is None else runner.agent_view(agent)
        self.limits = limits
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
        self.run_id = run_id or uuid.uuid4().hex
        if timeout is None:
            timeout = options.timeout_ms / 1000.0 if options.timeout_ms else limits.timeout_s
        deadlines = self.deadlines = Deadlines.start(timeout, time_remaining, limits.finish_grace_s)
        self.max_turns = options.max_turns or limits.max_turns
        self.recall_limit = options.recall_limit or limits.recall_limit
        self.ctx = RunContext(tenant_key(scope), options.session_id, self.run_id, scope, deadlines.work, self.deps)
        self.settlement = Settlement(
            self.deps, scope, self.run_id, model.name, limits.max_output_tokens, deadlines, emit
        )
        self.journal = Journal(self.deps, scope, options.session_id, self.run_id, model.name, deadlines)
        self.messages: list[Message] = [Message("user", options.prompt)]
        self.memories: list[str] = []
        self.texts: list[str] = []
        self.records: list[agent_pb2.ToolCallRecord] = []
        self.recalled_ids: list[str] = []
        self.seed = Seed([], [], [], [])
        self.interruption = ""
        self.turns = 0
        self.held = HeldApprovals(options.defer_approvals, tuple(options.approval_ids))

    # -- the loop ------------------------------------------------------------

    async def execute(self) -> agent_pb2.RunResponse:
        await self._start()
        return await self._loop()

    async def _loop(self) -> agent_pb2.RunResponse:
        settlement, journal = self.settlement, self.journal
        while True:
            self.turns += 1
            turn = self.turns
            metrics.record_turn(self.ctx.tenant)
            response: ModelResponse | None = None
            outcomes: list[ToolOutcome] = []
            try:
                async with asyncio.timeout_at(self.deadlines.work):
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
                timeout_ms = round((self.deadlines.work - self.deadlines.started) * 1000)
                self._interrupt(f"timeout: the run took longer than {timeout_ms} ms")
            except (ApprovalRequired, ApprovalNotUsable):
                # The caller will resume in a new run (or was refused an approval it presented):
                # settle this turn, then tell it which approval to get, or why it could not be used.
                actual = settlement.actual(response)
                entry = self._turn_entry(turn, response, outcomes, actual, last=False)
                await _all(settlement.commit(actual), journal.append(entry))
                raise
            if response is not None and response.text:
                self.texts.append(response.text)
            self.messages.extend(o.message for o in outcomes)
            actual = settlement.actual(response)
            calls = response.tool_calls if response is not None else []
            last = bool(self.interruption) or not calls
            if not last and turn >= self.max_turns:
                self._interrupt(f"max_turns: stopped after {turn} turns")
                last = True
            entry = self._turn_entry(turn, response, outcomes, actual, last)
            if last:
                await _all(settlement.commit(actual), journal.append(entry), self._remember())
                return self.response()
            appended = asyncio.ensure_future(journal.append(entry))
            pause = bool(self.paused_calls) and self.runner.pauses is not None
            try:
                await settlement.commit(actual)
                hold_s = self.runner.pauses.settings.ttl_for(self.ctx.tenant) if pause and self.runner.pauses else 0.0
                await settlement.reserve(turn + 1, self.estimate_next(), hold_s=hold_s)
            except BudgetRefused as refused:
                await appended
                return await self._end_on_budget(refused)
            except BaseException:
                appended.cancel()
                raise
            await appended
            if pause:
                return await pausing.pause(self)

    def _turn_entry(
        self,
        turn: int,
        response: ModelResponse | None,
        outcomes: list[ToolOutcome],
        actual: budget_pb2.Usage,
        last: bool,
    ) -> audit_pb2.AppendRequest:
        return self.journal.turn_entry(
            turn,
            response,
            outcomes,
            actual,
            prompt=self.options.prompt,
            recalled_ids=self.recalled_ids,
            history_ids=self.seed.history_episode_ids,
            final_output=self.output() if last else None,
            interruption=self.interruption,
        )

    async def _end_on_budget(self, refused: BudgetRefused) -> agent_pb2.RunResponse:
        self._interrupt(f"budget: {str(refused).removeprefix('budget exceeded: ')}")
        ended = self.journal.entry("run_interrupted", {"reason": self.interruption, "output": self.output()})
        await _all(self.journal.append(ended), self._remember())
        return self.response()

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
        appended = asyncio.ensure_future(self.journal.append(self.journal.entry("tool_results", {"results": received})))
        try:
            await self.settlement.reserve_replacing(self.turns + 1, self.estimate_next())
        except BudgetRefused as refused:
            await appended
            return await self._end_on_budget(refused)
        except BaseException:
            appended.cancel()
            raise
        await appended
        return await self._loop()

    # -- the opening calls ---------------------------------------------------

    async def _start(self) -> None:
        limits = self.limits
        # Counted apart (never fewer tokens than together), so the system prompt's count is reused.
        model = self.model
        estimate = model.estimate_tokens(limits.system_prompt) + model.estimate_tokens(self.options.prompt)
        estimate += self.tool_token_count + limits.seed.reserved_tokens(self.options.session_id)
        if self.recall_limit > 0:
            estimate += limits.context_tokens  # the recalled memories' room
        options = self.options
        request = context_request(self.scope, options.session_id, options.prompt, limits.seed, self.recall_limit)
        reserved, context, offered = await asyncio.gather(
            self.settlement.first_reserve(estimate),
            read_context(self.deps, request, self.deadlines.hard),
            self._narrow_offer(),
            return_exceptions=True,
        )
        # Any failure ends the run; a reservation that did succeed is released by run().
        for result in (reserved, context, offered):
            if isinstance(result, BaseException):
                raise result
        assert isinstance(context, memory_pb2.GetContextResponse)
        self.seed = seed_from(context, options.prompt, limits.seed, model.estimate_tokens)
        hits, threshold = context.recall_hits, context.min_vector_similarity
        for episode_id, text in memories.select_memories(hits, threshold, limits, model):
            self.memories.append(text)
            self.recalled_ids.append(episode_id)

    async def _narrow_offer(self) -> None:
        """Drops the tools the tenant's policy denies outright: the model is never offered what it may not call.

        The reservation counted the agent's whole allow-list, so it still covers the smaller offer.
        """
        policies = self.runner.policies
        if not self.tool_specs or policies is None:
            return
        policy = await policies.get(self.ctx.tenant, self.scope, self.deadlines.hard)
        # Only the offer narrows: a call the model makes anyway to a tool its agent allows still
        # goes through the policy check, which denies it and audits the denial.
        self.tool_specs = offered_tools(self.tool_specs, self.tool_tags, policy)

    # -- the model -----------------------------------------------------------

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
        lend = self.runner.slots.lent(self.ctx.tenant) if self.model.remote else contextlib.nullcontext()
        try:
            async with lend:  # a remote model's wait costs no CPU here: the run slot serves others meanwhile
                response = await with_retries(
                    lambda: self.model.complete(request, on_text),
                    limits.retry,
                    self.deadlines.work,
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

    def estimate_next(self) -> int:
        """The next request's input as the model will read it, counted part by part (never fewer tokens
        than together): system prompt, tools, memories with their header, the seeded blocks, facts and
        history, every message and tool call."""
        model = self.model
        estimate = model.estimate_tokens(self.limits.system_prompt) + self.tool_token_count
        if self.memories:
            estimate += model.estimate_tokens(MEMORIES_HEADER) + sum(
                memories.memory_tokens(model, text) for text in self.memories
            )
        seeded = seed_text(self.seed.blocks, self.seed.facts)
        if seeded:
            estimate += model.estimate_tokens(seeded)
        for m in (*self.seed.history, *self.messages):
            estimate += model.estimate_tokens(m.content)
            for c in m.tool_calls:
                arguments = json.dumps(c.arguments, sort_keys=True)
                estimate += model.estimate_tokens(c.name) + model.estimate_tokens(arguments)
        return estimate

    # -- the answer ----------------------------------------------------------

    async def _remember(self) -> None:
        await memories.remember(self.deps, self.scope, self.options, self.run_id, self.output(), self.deadlines.hard)

    def _interrupt(self, reason: str) -> None:
        if not self.interruption:
            self.interruption = reason

    def output(self) -> str:
        return "\n".join(self.texts)

    def response(self) -> agent_pb2.RunResponse:
        return agent_pb2.RunResponse(
            run_id=self.run_id,
            output=self.output(),
            turns=self.turns,
            usage=self.settlement.charged,
            interrupted=bool(self.interruption),
            interruption_reason=self.interruption,
            tool_calls=self.records,
            warnings=list(self.settlement.warnings.values()),
            recalled_episode_ids=self.recalled_ids,
            history_episode_ids=self.seed.history_episode_ids,
            status=agent_pb2.RUN_STATUS_INTERRUPTED if self.interruption else agent_pb2.RUN_STATUS_COMPLETED,
        )
