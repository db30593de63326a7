"""Every status a service answers with becomes the typed exception a caller can act on."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from loomflow.client import (
    AlreadyExists,
    ApprovalRequired,
    BudgetExceeded,
    Cancelled,
    Conflict,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    LoomflowError,
    MemoryClient,
    NotFound,
    PermissionDenied,
    RateLimited,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    from_rpc_error,
)
from loomflow.testing.suite import RunningSuite


def rpc_error(code: grpc.StatusCode, message: str = "m", *details: any_pb2.Any) -> grpc.aio.AioRpcError:
    trailing = grpc.aio.Metadata()
    if details:
        status = status_pb2.Status(code=code.value[0], message=message, details=list(details))
        trailing.add("grpc-status-details-bin", status.SerializeToString())
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, message)


def packed(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (grpc.StatusCode.NOT_FOUND, NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, AlreadyExists),
        (grpc.StatusCode.ABORTED, Conflict),
        (grpc.StatusCode.FAILED_PRECONDITION, FailedPrecondition),
        (grpc.StatusCode.UNAUTHENTICATED, Unauthenticated),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, BudgetExceeded),
        (grpc.StatusCode.UNAVAILABLE, Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceeded),
        (grpc.StatusCode.CANCELLED, Cancelled),
        (grpc.StatusCode.UNIMPLEMENTED, Unimplemented),
        (grpc.StatusCode.INTERNAL, Internal),
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgument),
    ],
)
def test_each_status_code_maps_to_its_exception(code: grpc.StatusCode, kind: type[LoomflowError]) -> None:
    error = from_rpc_error(rpc_error(code, "what happened"))
    assert type(error) is kind
    assert error.code == code
    assert error.message == "what happened"
    assert str(error) == f"{code.name}: what happened"


def test_an_unknown_code_is_still_a_loomflow_error_with_its_code() -> None:
    error = from_rpc_error(rpc_error(grpc.StatusCode.DATA_LOSS))
    assert type(error) is LoomflowError
    assert error.code == grpc.StatusCode.DATA_LOSS


def test_budget_exceeded_names_the_limit() -> None:
    info = error_details_pb2.ErrorInfo(reason="LIMIT_EXCEEDED", metadata={"limit": "user/total_tokens/daily"})
    error = from_rpc_error(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "over", packed(info)))
    assert isinstance(error, BudgetExceeded)
    assert error.limit == "user/total_tokens/daily"


def test_approval_required_carries_the_approval_id() -> None:
    info = error_details_pb2.ErrorInfo(reason="APPROVAL_REQUIRED", metadata={"approval_id": "apr_1"})
    error = from_rpc_error(rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "ask", packed(info)))
    assert isinstance(error, ApprovalRequired)
    assert isinstance(error, FailedPrecondition), "callers catching FailedPrecondition still catch it"
    assert error.approval_id == "apr_1"


def test_only_unavailable_is_retryable() -> None:
    assert from_rpc_error(rpc_error(grpc.StatusCode.UNAVAILABLE)).retryable
    assert not from_rpc_error(rpc_error(grpc.StatusCode.INTERNAL)).retryable


async def test_invalid_argument_from_a_real_server_lists_the_field_violations(suite: RunningSuite) -> None:
    memory = MemoryClient(suite.channel)
    with pytest.raises(InvalidArgument) as caught:
        await memory.recall("", user_id="__jeeves_anon_user__")
    assert set(caught.value.fields) == {"scope.user_id", "query"}
    by_field = {v.field: v for v in caught.value.field_violations}
    assert "sentinel" in by_field["scope.user_id"].description
    assert by_field["scope.user_id"].reason == "user_id.not_reserved"


def test_rate_limited_carries_the_retry_hint_and_is_not_a_budget_error() -> None:
    info = error_details_pb2.ErrorInfo(reason="RATE_LIMITED", metadata={"limit": "rate_limit_per_user"})
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1, nanos=500_000_000))
    packed_retry = any_pb2.Any()
    packed_retry.Pack(retry)
    error = from_rpc_error(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", packed(info), packed_retry))
    assert isinstance(error, RateLimited)
    assert isinstance(error, ResourceExhausted)
    assert not isinstance(error, BudgetExceeded)
    assert error.retry_after_s == 1.5
    assert error.limit == "rate_limit_per_user"
