"""BudgetService on the wire: protobuf in, domain calls, protobuf out. Nothing else.

The kernel interceptor has already authenticated the caller and validated the
request against the .proto's rules; domain errors raised below become statuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from loomflow.budget import windows
from loomflow.budget.core import Budget
from loomflow.budget.models import (
    BudgetWarning,
    Charge,
    Dimension,
    KeptReservation,
    Limit,
    LimitState,
    LimitTarget,
    State,
    Usage,
    Window,
)
from loomflow.kernel.auth import require_operator
from loomflow.kernel.tenancy import tenant_key
from loomflow.v1 import budget_pb2, budget_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]

# Wire enums start at 1 (0 is UNSPECIFIED, refused by validation); domain enums at 0.
_TARGETS = {
    budget_pb2.LIMIT_TARGET_GLOBAL: LimitTarget.GLOBAL,
    budget_pb2.LIMIT_TARGET_DEFAULT_USER: LimitTarget.DEFAULT_USER,
    budget_pb2.LIMIT_TARGET_USER: LimitTarget.USER,
}


def usage_from_wire(usage: budget_pb2.Usage) -> Usage:
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        wall_clock_ms=usage.wall_clock_ms,
    )


def charge_to_wire(charge: Charge) -> budget_pb2.Charge:
    return budget_pb2.Charge(
        input_tokens=charge.input_tokens,
        output_tokens=charge.output_tokens,
        total_tokens=charge.total_tokens,
        cached_input_tokens=charge.cached_input_tokens,
        cache_write_tokens=charge.cache_write_tokens,
        cost_micros=charge.cost_micros,
        wall_clock_ms=charge.wall_clock_ms,
        priced_as=charge.priced_as,
    )


def limit_from_wire(limit: budget_pb2.Limit) -> Limit:
    return Limit(Dimension(limit.dimension - 1), Window(limit.window - 1), limit.max)


def limit_to_wire(limit: Limit) -> budget_pb2.Limit:
    return budget_pb2.Limit(
        dimension=budget_pb2.Dimension.Name(limit.dimension + 1),
        window=budget_pb2.Window.Name(limit.window + 1),
        max=limit.max,
    )


def limit_usage_to_wire(state: LimitState, now_ms: int) -> budget_pb2.LimitUsage:
    message = budget_pb2.LimitUsage(
        limit=limit_to_wire(state.limit),
        applies_to=state.applies_to.value,
        committed=state.committed,
        reserved=state.reserved,
        fraction=state.fraction,
    )
    span = windows.bounds(state.limit.window, now_ms)
    if span is not None:
        message.window_start.FromMilliseconds(span[0])
        message.window_end.FromMilliseconds(span[1])
    return message


_STATE_NAMES = {State.HELD: "held", State.COMMITTED: "committed", State.RELEASED: "released", State.EXPIRED: "expired"}


def reservation_to_wire(kept: KeptReservation) -> budget_pb2.ReservationRecord:
    record = kept.reservation
    message = budget_pb2.ReservationRecord(
        reservation_id=record.reservation_id,
        call_id=record.call_id,
        state=_STATE_NAMES[kept.state],
        held=charge_to_wire(record.held),
    )
    if kept.charged is not None:
        message.charged.CopyFrom(charge_to_wire(kept.charged))
    message.created_at.FromMilliseconds(record.created_ms)
    message.expires_at.FromMilliseconds(record.expires_ms)
    return message


def warnings_to_wire(found: list[BudgetWarning]) -> list[budget_pb2.BudgetWarning]:
    return [
        budget_pb2.BudgetWarning(
            limit=limit_to_wire(w.state.limit),
            applies_to=w.state.applies_to.value,
            fraction=w.state.fraction,
            message=w.message,
        )
        for w in found
    ]


class BudgetServicer(budget_pb2_grpc.BudgetServiceServicer):
    def __init__(self, budget: Budget) -> None:
        self.budget = budget

    async def Reserve(self, request: budget_pb2.ReserveRequest, context: Context) -> budget_pb2.ReserveResponse:
        result = await self.budget.reserve(
            tenant_key(request.scope),
            request.call_id,
            request.model,
            usage_from_wire(request.estimate),
            request.ttl_ms,
        )
        reservation = result.outcome.reservation
        response = budget_pb2.ReserveResponse(
            reservation_id=reservation.reservation_id,
            held=charge_to_wire(reservation.held),
            warnings=warnings_to_wire(result.warnings),
            replayed=result.outcome.replayed,
        )
        response.expires_at.FromMilliseconds(reservation.expires_ms)
        return response

    async def Commit(self, request: budget_pb2.CommitRequest, context: Context) -> budget_pb2.CommitResponse:
        result = await self.budget.commit(
            tenant_key(request.scope), request.reservation_id, usage_from_wire(request.actual)
        )
        return budget_pb2.CommitResponse(
            charged=charge_to_wire(result.outcome.charged),
            warnings=warnings_to_wire(result.warnings),
            replayed=result.outcome.replayed,
            overruns=[
                budget_pb2.Overrun(
                    dimension=budget_pb2.Dimension.Name(o.dimension + 1),
                    reserved=o.held,
                    charged=o.charged,
                    excess=o.excess,
                )
                for o in result.overruns
            ],
        )

    async def Release(self, request: budget_pb2.ReleaseRequest, context: Context) -> budget_pb2.ReleaseResponse:
        released = await self.budget.release(tenant_key(request.scope), request.reservation_id)
        return budget_pb2.ReleaseResponse(released=released)

    async def GetStatus(self, request: budget_pb2.GetStatusRequest, context: Context) -> budget_pb2.GetStatusResponse:
        result = await self.budget.status(tenant_key(request.scope))
        return budget_pb2.GetStatusResponse(
            limits=[limit_usage_to_wire(state, result.now_ms) for state in result.snapshot.limits],
            total=charge_to_wire(result.snapshot.total),
            warnings=warnings_to_wire(result.warnings),
        )

    async def SetLimits(self, request: budget_pb2.SetLimitsRequest, context: Context) -> budget_pb2.SetLimitsResponse:
        require_operator("SetLimits")
        target = _TARGETS[request.target]
        tenant = tenant_key(request.scope) if target is LimitTarget.USER else ""
        stored = await self.budget.set_limits(target, tenant, [limit_from_wire(x) for x in request.limits])
        return budget_pb2.SetLimitsResponse(limits=[limit_to_wire(x) for x in stored])

    async def Forget(
        self, request: budget_pb2.BudgetServiceForgetRequest, context: Context
    ) -> budget_pb2.BudgetServiceForgetResponse:
        receipt = await self.budget.forget(tenant_key(request.scope))
        return budget_pb2.BudgetServiceForgetResponse(
            reservations_deleted=receipt.reservations_deleted,
            open_holds_released=receipt.open_holds_released,
            usage_windows_deleted=receipt.usage_windows_deleted,
            override_removed=receipt.override_removed,
        )

    async def Export(
        self, request: budget_pb2.BudgetServiceExportRequest, context: Context
    ) -> AsyncIterator[budget_pb2.BudgetServiceExportResponse]:
        exported = await self.budget.export(tenant_key(request.scope))
        for window, usage in sorted(exported.usage.items()):
            yield budget_pb2.BudgetServiceExportResponse(
                usage=budget_pb2.UsageRecord(window_key=window, usage=charge_to_wire(usage))
            )
        for kept in exported.reservations:
            yield budget_pb2.BudgetServiceExportResponse(reservation=reservation_to_wire(kept))
        if exported.override:
            yield budget_pb2.BudgetServiceExportResponse(
                limit_override=budget_pb2.SetLimitsResponse(limits=[limit_to_wire(x) for x in exported.override])
            )
