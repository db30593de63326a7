"""BudgetService through real gRPC on a free port: wire mapping, statuses, auth, backends by DSN."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.testing.suite import TEST_JWT_SECRET, RunningSuite, running_suite
from loomflow.v1 import budget_pb2, budget_pb2_grpc, tenancy_pb2
from tests.budget.conftest import Backend
from tests.support.status import bad_request_fields

ALICE = tenancy_pb2.UserScope(user_id="alice")
BOB = tenancy_pb2.UserScope(user_id="bob")
ANONYMOUS = tenancy_pb2.UserScope(anonymous=tenancy_pb2.Anonymous())


def token(role: Role) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {mint_token(AuthSettings(jwt_secret=TEST_JWT_SECRET), 'tester', role)}"),)


def error_limit(error: grpc.aio.AioRpcError) -> str:
    raw = next(v for k, v in (error.trailing_metadata() or ()) if k == "grpc-status-details-bin")
    status = status_pb2.Status.FromString(raw if isinstance(raw, bytes) else raw.encode())
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return str(info.metadata["limit"])


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[RunningSuite]:
    async with running_suite(tmp_path, services="budget") as running:
        yield running


def stub(suite: RunningSuite) -> Any:
    return budget_pb2_grpc.BudgetServiceStub(suite.channel)


def reserve(scope: tenancy_pb2.UserScope, call_id: str, tokens: int, model: str = "echo") -> budget_pb2.ReserveRequest:
    return budget_pb2.ReserveRequest(
        scope=scope, call_id=call_id, model=model, estimate=budget_pb2.Usage(input_tokens=tokens)
    )


def limit(maximum: int, dimension: budget_pb2.Dimension = budget_pb2.DIMENSION_TOTAL_TOKENS) -> budget_pb2.Limit:
    return budget_pb2.Limit(dimension=dimension, window=budget_pb2.WINDOW_DAILY, max=maximum)


async def test_reserve_commit_status_round_trip(served: RunningSuite) -> None:
    budget = stub(served)
    await budget.SetLimits(
        budget_pb2.SetLimitsRequest(scope=ALICE, target=budget_pb2.LIMIT_TARGET_USER, limits=[limit(1_000)])
    )
    held = await budget.Reserve(reserve(ALICE, "c1", 850, model="gpt-4o-mini"))
    assert held.held.priced_as == "gpt-4o-mini"
    assert held.held.total_tokens == 850
    assert held.expires_at.ToMilliseconds() > 0
    assert [w.limit.max for w in held.warnings] == [1_000], "85 % of the limit is held: soft warning"

    committed = await budget.Commit(
        budget_pb2.CommitRequest(
            scope=ALICE,
            reservation_id=held.reservation_id,
            actual=budget_pb2.Usage(input_tokens=500, output_tokens=100, cached_input_tokens=100, wall_clock_ms=42),
        )
    )
    # 400 x 0.15 + 100 x 0.075 + 100 x 0.6 = 127.5 -> 128 micro-USD
    assert (committed.charged.cost_micros, committed.charged.wall_clock_ms) == (128, 42)
    again = await budget.Commit(
        budget_pb2.CommitRequest(scope=ALICE, reservation_id=held.reservation_id, actual=budget_pb2.Usage())
    )
    assert again.replayed
    assert again.charged == committed.charged

    status = await budget.GetStatus(budget_pb2.GetStatusRequest(scope=ALICE))
    (usage,) = status.limits
    assert (usage.applies_to, usage.committed, usage.reserved) == ("user", 600, 0)
    assert usage.window_end.ToMilliseconds() - usage.window_start.ToMilliseconds() == 86_400_000
    assert status.total.cost_micros == 128
    assert status.total.cached_input_tokens == 100


async def test_refusal_is_resource_exhausted_naming_the_limit(served: RunningSuite) -> None:
    budget = stub(served)
    await budget.SetLimits(
        budget_pb2.SetLimitsRequest(scope=ALICE, target=budget_pb2.LIMIT_TARGET_DEFAULT_USER, limits=[limit(100)])
    )
    await budget.Reserve(reserve(ANONYMOUS, "c1", 100))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await budget.Reserve(reserve(ANONYMOUS, "c2", 1))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_limit(refused.value) == "user:total_tokens/daily"
    assert "the user limit (total_tokens, daily (UTC)) is" in (refused.value.details() or "")


async def test_another_tenants_reservation_is_not_found(served: RunningSuite) -> None:
    budget = stub(served)
    held = await budget.Reserve(reserve(ALICE, "c1", 10))
    for call in (
        budget.Commit(budget_pb2.CommitRequest(scope=BOB, reservation_id=held.reservation_id, actual={})),
        budget.Release(budget_pb2.ReleaseRequest(scope=BOB, reservation_id=held.reservation_id)),
        budget.Release(budget_pb2.ReleaseRequest(scope=ALICE, reservation_id="made-up")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await call
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    released = await budget.Release(budget_pb2.ReleaseRequest(scope=ALICE, reservation_id=held.reservation_id))
    assert released.released


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (budget_pb2.ReserveRequest(scope=ALICE, estimate=budget_pb2.Usage()), "call_id"),
        (budget_pb2.ReserveRequest(scope=ALICE, call_id="c"), "estimate"),
        (
            budget_pb2.ReserveRequest(
                scope=ALICE, call_id="c", estimate=budget_pb2.Usage(input_tokens=1, cached_input_tokens=2)
            ),
            "estimate.cached_input_tokens",
        ),
        (
            budget_pb2.ReserveRequest(scope=ALICE, call_id="c", estimate=budget_pb2.Usage(output_tokens=10**13)),
            "estimate.output_tokens",
        ),
        (budget_pb2.ReserveRequest(scope=ALICE, call_id="c", estimate={}, ttl_ms=-1), "ttl_ms"),
    ],
)
async def test_bad_reserve_requests_are_invalid_argument_naming_the_field(
    served: RunningSuite, request_: budget_pb2.ReserveRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub(served).Reserve(request_)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_request_fields(bad.value)


async def test_duplicate_limits_are_invalid_argument(served: RunningSuite) -> None:
    request = budget_pb2.SetLimitsRequest(
        scope=ALICE, target=budget_pb2.LIMIT_TARGET_GLOBAL, limits=[limit(1), limit(2)]
    )
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub(served).SetLimits(request)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(bad.value) == ["limits[1]"]


async def test_set_limits_needs_an_operator(tmp_path: Path) -> None:
    async with running_suite(tmp_path, services="budget", insecure=False) as secure:
        budget = stub(secure)
        request = budget_pb2.SetLimitsRequest(scope=ALICE, target=budget_pb2.LIMIT_TARGET_GLOBAL, limits=[limit(5)])
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await budget.SetLimits(request, metadata=token(Role.SERVICE))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        reply = await budget.SetLimits(request, metadata=token(Role.OPERATOR))
        assert list(reply.limits) == [limit(5)]
        held = await budget.Reserve(reserve(ALICE, "c1", 5), metadata=token(Role.SERVICE))
        assert held.reservation_id
        with pytest.raises(grpc.aio.AioRpcError) as user:
            await budget.Reserve(reserve(ALICE, "c2", 1), metadata=token(Role.USER))
        assert user.value.code() == grpc.StatusCode.PERMISSION_DENIED, "end users cannot call the budget directly"


async def test_limits_from_settings_apply_from_the_first_call(tmp_path: Path) -> None:
    overrides = {"budget": {"user_limits": "total_tokens/none=10", "global_limits": "cost_micros/monthly=1000"}}
    async with running_suite(tmp_path, services="budget", overrides=overrides) as running:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub(running).Reserve(reserve(ALICE, "c1", 11))
        assert error_limit(refused.value) == "user:total_tokens/none"
        status = await stub(running).GetStatus(budget_pb2.GetStatusRequest(scope=ALICE))
        assert [(u.applies_to, u.limit.max) for u in status.limits] == [("global", 1000), ("user", 10)]


async def test_every_backend_serves_through_grpc(tmp_path: Path, backend: Backend) -> None:
    async with running_suite(tmp_path, services="budget", overrides={"budget": {"dsn": backend.dsn}}) as running:
        budget = stub(running)
        held = await budget.Reserve(reserve(ALICE, "c1", 10))
        await budget.Commit(
            budget_pb2.CommitRequest(
                scope=ALICE, reservation_id=held.reservation_id, actual=budget_pb2.Usage(input_tokens=7)
            )
        )
        status = await budget.GetStatus(budget_pb2.GetStatusRequest(scope=ALICE))
        assert status.total.input_tokens == 7


async def test_unreachable_store_is_unavailable_through_grpc(tmp_path: Path, durable_backend: Backend) -> None:
    backend = durable_backend
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = backend.through(probe.getsockname()[1])
    async with running_suite(tmp_path, services="budget", overrides={"budget": {"dsn": dead.dsn}}) as running:
        with pytest.raises(grpc.aio.AioRpcError) as down:
            await stub(running).Reserve(reserve(ALICE, "c1", 1))
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_forget_and_export_through_the_wire(served: RunningSuite) -> None:
    budget = stub(served)
    await budget.SetLimits(
        budget_pb2.SetLimitsRequest(scope=ALICE, target=budget_pb2.LIMIT_TARGET_USER, limits=[limit(1_000)])
    )
    held = await budget.Reserve(reserve(ALICE, "call-1", 100))
    await budget.Commit(
        budget_pb2.CommitRequest(
            scope=ALICE, reservation_id=held.reservation_id, actual=budget_pb2.Usage(input_tokens=80)
        )
    )
    await budget.Reserve(reserve(ALICE, "call-2", 10))
    await budget.Reserve(reserve(BOB, "call-1", 7))

    records = [r async for r in budget.Export(budget_pb2.BudgetServiceExportRequest(scope=ALICE))]
    kinds = [r.WhichOneof("record") for r in records]
    assert kinds.count("usage") == 3, "all time, today and this month"
    assert sorted(r.reservation.state for r in records if r.HasField("reservation")) == ["committed", "held"]
    assert [r.limit_override.limits[0].max for r in records if r.HasField("limit_override")] == [1_000]
    committed = next(r.reservation for r in records if r.reservation.state == "committed")
    assert committed.charged.input_tokens == 80
    assert committed.call_id == "call-1"

    receipt = await budget.Forget(budget_pb2.BudgetServiceForgetRequest(scope=ALICE))
    assert (receipt.reservations_deleted, receipt.open_holds_released) == (2, 1)
    assert receipt.override_removed
    assert [r async for r in budget.Export(budget_pb2.BudgetServiceExportRequest(scope=ALICE))] == []
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await budget.Commit(
            budget_pb2.CommitRequest(
                scope=ALICE, reservation_id=held.reservation_id, actual=budget_pb2.Usage(input_tokens=80)
            )
        )
    assert late.value.code() == grpc.StatusCode.NOT_FOUND
    bob = [r async for r in budget.Export(budget_pb2.BudgetServiceExportRequest(scope=BOB))]
    assert [r.reservation.call_id for r in bob if r.HasField("reservation")] == ["call-1"], "bob is untouched"
