"""Runs of the agent: the entry point that starts, resumes and accounts for runs (DESIGN §4).

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

The run itself, by concern, is in :mod:`loomflow.agent.run`.

A run is interrupted, not failed, when it has done work and then hits the
budget, ``max_turns``, its timeout or a denial: the caller gets what it has.
A run the budget refuses before doing anything answers RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from loomflow.agent import metrics, paused
from loomflow.agent.definitions import AgentDefinition, AgentDefinitions, TenantPolicies, from_stored_json
from loomflow.agent.dependencies import Dependencies
from loomflow.agent.models.base import Model, ToolCall, tools_text
from loomflow.agent.models.catalog import ModelCatalog
from loomflow.agent.paused import Pauses
from loomflow.agent.run import pausing
from loomflow.agent.run.limits import RunLimits
from loomflow.agent.run.loop import Run
from loomflow.agent.run.settlement import BudgetRefused
from loomflow.agent.run.slots import RunSlots
from loomflow.agent.toolcalls import Emit, ToolCaller
from loomflow.agent.tools.registry import ToolRegistry, ToolSpec
from loomflow.kernel import errors
from loomflow.kernel.tenancy import tenant_key
from loomflow.kernel.tracing import bind_run
from loomflow.v1 import agent_pb2, tenancy_pb2


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
        slots: RunSlots | None = None,
    ) -> None:
        self.pauses = pauses
        self.slots = slots if slots is not None else RunSlots(0)
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
        self._agent_views: dict[AgentDefinition, tuple[RunLimits, tuple[ToolSpec, ...]]] = {}

    def agent_view(self, agent: AgentDefinition) -> tuple[RunLimits, tuple[ToolSpec, ...]]:
        """An agent's limits and the server tools it allows, worked out once per definition (both
        depend only on the frozen definition and this runner): ~25 us of every run otherwise."""
        view = self._agent_views.get(agent)
        if view is None:
            if len(self._agent_views) > 1024:
                self._agent_views.clear()
            specs = tuple(s for s in self.tool_specs if agent.allows(s.name))
            view = self._agent_views[agent] = (agent.limits(self.limits), specs)
        return view

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
        waited = time.monotonic()
        async with self.slots.slot(tenant_key(scope)):
            return await self._run(scope, options, _left(time_remaining, waited), emit)

    async def _run(
        self,
        scope: tenancy_pb2.UserScope,
        options: agent_pb2.RunOptions,
        time_remaining: float | None,
        emit: Emit | None,
    ) -> agent_pb2.RunResponse:
        agent = await self.definitions.resolve(options.agent) if self.definitions is not None else None
        model = self.catalog.resolve(options.model or (agent.model if agent is not None else ""))
        run = Run(self, scope, options, model, time_remaining, emit, agent)
        bind_run(run.ctx.tenant, options.session_id, run.run_id)  # span attributes, log fields, baggage downstream
        try:
            response = await run.execute()
        except BaseException:
            metrics.record_run(run.ctx.tenant, "failed")
            await run.settlement.release()
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
        waited = time.monotonic()
        async with self.slots.slot(tenant_key(scope)):
            return await self._resume(scope, run_id, results, _left(time_remaining, waited), emit)

    async def _resume(
        self,
        scope: tenancy_pb2.UserScope,
        run_id: str,
        results: Sequence[agent_pb2.ToolResult],
        time_remaining: float | None,
        emit: Emit | None,
    ) -> agent_pb2.RunResponse:
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
        scope = paused.unpack(state["scope"], tenancy_pb2.UserScope)
        run = Run(
            self, scope, options, model, time_remaining, emit, agent, run_id=run_id, timeout=float(state["work_left_s"])
        )
        pausing.restore(run, state, record.reservation_id)
        bind_run(tenant, options.session_id, run_id)
        try:
            response = await run.resume(results)
        except BaseException:
            metrics.record_run(tenant, "failed")
            await run.settlement.release()
            raise
        metrics.record_run(tenant, "interrupted" if response.interrupted else "completed")
        return response


def _left(time_remaining: float | None, since: float) -> float | None:
    """The caller's time left now, ``since`` (a ``time.monotonic()``) being when it had ``time_remaining``."""
    return None if time_remaining is None else time_remaining - (time.monotonic() - since)


__all__ = ["BudgetRefused", "RunLimits", "Runner", "ToolCall"]
