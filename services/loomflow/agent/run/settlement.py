"""The run's budget: at most one reservation at a time, the charges it committed, the warnings it saw.

Each turn reserves before its model call and commits what it used; whatever ends
the run early releases the outstanding hold (and the reservation's TTL covers a
crash of the Agent itself), so no hold outlives the run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence

import grpc
from google.rpc import error_details_pb2, status_pb2

from loomflow.agent.dependencies import Dependencies, dependency_error
from loomflow.agent.models.base import ModelResponse
from loomflow.agent.run.limits import Deadlines
from loomflow.agent.toolcalls import Emit
from loomflow.kernel import errors
from loomflow.v1 import agent_pb2, budget_pb2, tenancy_pb2

log = logging.getLogger("loomflow.agent")

_TTL_MARGIN_MS = 5000  # a crashed Agent's hold outlives the run by this much at most

WarningKey = tuple[int, int, str]


class BudgetRefused(Exception):
    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


def limit_of(error: grpc.aio.AioRpcError) -> str:
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


def _warning_key(warning: budget_pb2.BudgetWarning) -> WarningKey:
    return (warning.limit.dimension, warning.limit.window, warning.applies_to)


class Settlement:
    """One run's dealings with Budget; ``charged`` and ``warnings`` are what the caller is told."""

    def __init__(
        self,
        deps: Dependencies,
        scope: tenancy_pb2.UserScope,
        run_id: str,
        model_name: str,
        max_output_tokens: int,
        deadlines: Deadlines,
        emit: Emit | None,
    ) -> None:
        self.deps = deps
        self.scope = scope
        self.run_id = run_id
        self.model_name = model_name
        self.max_output_tokens = max_output_tokens
        self.deadlines = deadlines
        self.emit = emit
        self.reservation = ""
        self.charged = budget_pb2.Charge()
        self.warnings: dict[WarningKey, budget_pb2.BudgetWarning] = {}
        # Wall clock is charged from where the last charge ended (the run's start for turn 1),
        # so the turns' charges add up to the run's time, recall and reservations included.
        self.charged_until = deadlines.started

    def restore(
        self, charged: budget_pb2.Charge, warnings: Iterable[budget_pb2.BudgetWarning], reservation: str
    ) -> None:
        """Takes back a paused run's charges, warnings and held reservation."""
        self.charged = charged
        for warning in warnings:
            self.warnings[_warning_key(warning)] = warning
        self.reservation = reservation

    async def first_reserve(self, estimate: int) -> None:
        """The run's first hold; a refusal here means the run did nothing, so it answers RESOURCE_EXHAUSTED."""
        try:
            await self.reserve(1, estimate)
        except BudgetRefused as refused:
            raise errors.ResourceExhausted(str(refused), limit=refused.limit) from None

    async def reserve(self, turn: int, input_estimate: int, *, hold_s: float = 0.0, suffix: str = "") -> None:
        deadlines = self.deadlines
        remaining_ms = max(0, round((deadlines.work - time.monotonic()) * 1000))
        request = budget_pb2.ReserveRequest(
            scope=self.scope,
            call_id=f"{self.run_id}.{turn}{suffix}",
            model=self.model_name,
            estimate=budget_pb2.Usage(
                input_tokens=input_estimate,
                output_tokens=self.max_output_tokens,
                wall_clock_ms=remaining_ms,
            ),
            ttl_ms=min(86_400_000, max(1, round((deadlines.hard - time.monotonic() + hold_s) * 1000)) + _TTL_MARGIN_MS),
            run_id=self.run_id,
        )
        deps = self.deps
        try:
            reply = await deps.budget.Reserve(request, metadata=deps.metadata, timeout=deps.timeout(deadlines.hard))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise BudgetRefused(error.details() or "budget exhausted", limit_of(error)) from None
            raise dependency_error("budget", error) from None
        self.reservation = reply.reservation_id
        self.warn(reply.warnings)

    async def reserve_replacing(self, turn: int, input_estimate: int) -> None:
        """A resumed run's next hold, then the paused run's hold returned (refused: returned all the same)."""
        held, self.reservation = self.reservation, ""
        try:
            await self.reserve(turn, input_estimate, suffix=".resumed")
        except BudgetRefused:
            self.reservation = held
            await self.release()
            raise
        except BaseException:
            self.reservation = self.reservation or held
            raise
        fresh, self.reservation = self.reservation, held  # release the paused hold, keep the new one
        await self.release()
        self.reservation = fresh

    def actual(self, response: ModelResponse | None) -> budget_pb2.Usage:
        """What the turn used: the model's counted tokens and the time since the last charge."""
        turn_started, self.charged_until = self.charged_until, time.monotonic()
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

    async def commit(self, actual: budget_pb2.Usage) -> None:
        deps = self.deps
        request = budget_pb2.CommitRequest(scope=self.scope, reservation_id=self.reservation, actual=actual)
        try:
            reply = await deps.budget.Commit(request, metadata=deps.metadata, timeout=deps.timeout(self.deadlines.hard))
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
        self.warn(reply.warnings)

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

    def warn(self, warnings: Sequence[budget_pb2.BudgetWarning]) -> None:
        """Each warning once per run; streamed to the caller as it comes."""
        for warning in warnings:
            key = _warning_key(warning)
            if key in self.warnings:
                continue
            self.warnings[key] = warning
            if self.emit is not None:
                self.emit(agent_pb2.RunStreamResponse(budget_warning=warning))
