"""Typed client of BudgetService: reserve → commit/release, status, limits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import grpc

from loomflow.client._transport import ServiceClient, scope
from loomflow.v1 import budget_pb2, budget_pb2_grpc

_TARGETS = {
    "global": budget_pb2.LIMIT_TARGET_GLOBAL,
    "default_user": budget_pb2.LIMIT_TARGET_DEFAULT_USER,
    "user": budget_pb2.LIMIT_TARGET_USER,
}
_DIMENSIONS = {
    "input_tokens": budget_pb2.DIMENSION_INPUT_TOKENS,
    "output_tokens": budget_pb2.DIMENSION_OUTPUT_TOKENS,
    "total_tokens": budget_pb2.DIMENSION_TOTAL_TOKENS,
    "cost_micros": budget_pb2.DIMENSION_COST_MICROS,
    "wall_clock_ms": budget_pb2.DIMENSION_WALL_CLOCK_MS,
}
_WINDOWS = {"none": budget_pb2.WINDOW_NONE, "daily": budget_pb2.WINDOW_DAILY, "monthly": budget_pb2.WINDOW_MONTHLY}


def limit(dimension: str, max: int, window: str = "none") -> budget_pb2.Limit:
    """A limit by name: ``limit("total_tokens", 100_000, "daily")``."""
    try:
        return budget_pb2.Limit(dimension=_DIMENSIONS[dimension], window=_WINDOWS[window], max=max)
    except KeyError as missing:
        raise ValueError(f"unknown {missing}: dimensions {sorted(_DIMENSIONS)}, windows {sorted(_WINDOWS)}") from None


def usage(
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached_input_tokens: int = 0,
    cache_write_tokens: int = 0,
    wall_clock_ms: int = 0,
) -> budget_pb2.Usage:
    return budget_pb2.Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached_input_tokens,
        cache_write_tokens=cache_write_tokens,
        wall_clock_ms=wall_clock_ms,
    )


class BudgetClient(ServiceClient):
    _stub: budget_pb2_grpc.BudgetServiceAsyncStub

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = budget_pb2_grpc.BudgetServiceStub(channel)

    async def reserve(
        self,
        call_id: str,
        estimate: budget_pb2.Usage,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
        model: str = "",
        ttl_ms: int = 0,
        run_id: str = "",
    ) -> budget_pb2.ReserveResponse:
        """Holds ``estimate``; raises BudgetExceeded naming the limit. Safe to retry: same call_id, same hold."""
        request = budget_pb2.ReserveRequest(
            scope=scope(user_id, anonymous),
            call_id=call_id,
            model=model,
            estimate=estimate,
            ttl_ms=ttl_ms,
            run_id=run_id,
        )
        return await self._connection.unary(self._stub.Reserve, request, idempotent=True)

    async def commit(
        self,
        reservation_id: str,
        actual: budget_pb2.Usage,
        *,
        user_id: str | None = None,
        anonymous: bool = False,
    ) -> budget_pb2.CommitResponse:
        """Settles a reservation exactly once (a retry replays the original charge)."""
        request = budget_pb2.CommitRequest(
            scope=scope(user_id, anonymous), reservation_id=reservation_id, actual=actual
        )
        return await self._connection.unary(self._stub.Commit, request, idempotent=True)

    async def release(self, reservation_id: str, *, user_id: str | None = None, anonymous: bool = False) -> bool:
        request = budget_pb2.ReleaseRequest(scope=scope(user_id, anonymous), reservation_id=reservation_id)
        reply = await self._connection.unary(self._stub.Release, request, idempotent=True)
        return reply.released

    async def get_status(self, *, user_id: str | None = None, anonymous: bool = False) -> budget_pb2.GetStatusResponse:
        request = budget_pb2.GetStatusRequest(scope=scope(user_id, anonymous))
        return await self._connection.unary(self._stub.GetStatus, request, idempotent=True)

    async def set_limits(
        self,
        limits: Iterable[budget_pb2.Limit],
        *,
        target: str = "user",
        user_id: str | None = None,
        anonymous: bool = False,
    ) -> list[budget_pb2.Limit]:
        """Replaces the limits of ``target`` (global, default_user, or user = the scope's). Operator only."""
        if target not in _TARGETS:
            raise ValueError(f"target must be one of {sorted(_TARGETS)}")
        request = budget_pb2.SetLimitsRequest(
            scope=scope(user_id, anonymous), target=_TARGETS[target], limits=list(limits)
        )
        reply = await self._connection.unary(self._stub.SetLimits, request, idempotent=True)
        return list(reply.limits)

    async def forget(
        self, *, user_id: str | None = None, anonymous: bool = False
    ) -> budget_pb2.BudgetServiceForgetResponse:
        """Erases the tenant's usage, reservations and override (the global totals keep the aggregate)."""
        request = budget_pb2.BudgetServiceForgetRequest(scope=scope(user_id, anonymous))
        # Erasing again erases nothing more, so a retry is safe.
        return await self._connection.unary(self._stub.Forget, request, idempotent=True)

    async def export(
        self, *, user_id: str | None = None, anonymous: bool = False, deadline_s: float | None = None
    ) -> AsyncIterator[budget_pb2.BudgetServiceExportResponse]:
        request = budget_pb2.BudgetServiceExportRequest(scope=scope(user_id, anonymous))
        async for record in self._connection.stream(self._stub.Export, request, deadline_s=deadline_s):
            yield record
