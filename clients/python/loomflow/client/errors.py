"""Typed exceptions for every status a loomflow service answers with.

Catch the kind you can act on (``BudgetExceeded``, ``ApprovalRequired``,
``InvalidArgument`` with its field violations, …); every one is a
:class:`LoomflowError` carrying the status ``code`` and server ``message``.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2

_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    """Dotted path of the offending request field, e.g. ``scope.user_id``."""
    description: str
    reason: str = ""


class LoomflowError(Exception):
    """Base of every error this client raises for a failed call."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    retryable = False

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class InvalidArgument(LoomflowError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.field_violations = violations or []

    @property
    def fields(self) -> list[str]:
        return [v.field for v in self.field_violations]


class NotFound(LoomflowError):
    """The record does not exist for this tenant (another tenant's record is NotFound too)."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(LoomflowError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Conflict(LoomflowError):
    """ABORTED: a stale version or a concurrent change; re-read and retry."""

    code = grpc.StatusCode.ABORTED


class FailedPrecondition(LoomflowError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ApprovalRequired(FailedPrecondition):
    """A tool call needs a human's approval before the run can go on."""

    def __init__(self, message: str, approval_id: str = "") -> None:
        super().__init__(message)
        self.approval_id = approval_id


class Unauthenticated(LoomflowError):
    """The token is missing, malformed, forged or expired."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(LoomflowError):
    """The token is valid but may not do this (e.g. a token for bob used with user_id="alice")."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(LoomflowError):
    """RESOURCE_EXHAUSTED: a limit refused the call; ``limit`` names which."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, limit: str = "") -> None:
        super().__init__(message)
        self.limit = limit


class BudgetExceeded(ResourceExhausted):
    """A budget limit refused the call (tokens, cost or wall clock)."""


class RateLimited(ResourceExhausted):
    """The tenant is over its request rate or in-flight limit; nothing ran, so any call may be retried
    after ``retry_after_s`` (the client does so by itself within the call's deadline)."""

    def __init__(self, message: str, limit: str = "", retry_after_s: float = 0.0) -> None:
        super().__init__(message, limit)
        self.retry_after_s = retry_after_s


class Unavailable(LoomflowError):
    """The service, or a service it depends on, cannot be reached; retry later."""

    code = grpc.StatusCode.UNAVAILABLE
    retryable = True


class DeadlineExceeded(LoomflowError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(LoomflowError):
    code = grpc.StatusCode.CANCELLED


class Unimplemented(LoomflowError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(LoomflowError):
    """The server failed unexpectedly (it logged the details)."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[LoomflowError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.INTERNAL: Internal,
}


def _status(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    for key, value in error.trailing_metadata() or ():
        if key == _DETAILS_KEY:
            return status_pb2.Status.FromString(value if isinstance(value, bytes) else value.encode())
    return None


def from_rpc_error(error: grpc.aio.AioRpcError) -> LoomflowError:
    """The typed exception for a failed call, with the details the status carries."""
    code = error.code()
    message = error.details() or code.name
    status = _status(error)
    violations: list[FieldViolation] = []
    info: dict[str, str] = {}
    reason = ""
    retry_after_s = 0.0
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(FieldViolation(v.field, v.description, v.reason) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            error_info = error_details_pb2.ErrorInfo()
            detail.Unpack(error_info)
            reason = error_info.reason
            info.update(error_info.metadata)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after_s = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(message, violations)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        if reason == "RATE_LIMITED":
            return RateLimited(message, info.get("limit", ""), retry_after_s)
        return BudgetExceeded(message, info.get("limit", ""))
    if code == grpc.StatusCode.FAILED_PRECONDITION and reason == "APPROVAL_REQUIRED":
        return ApprovalRequired(message, info.get("approval_id", ""))
    kind = _BY_CODE.get(code)
    if kind is not None:
        return kind(message)
    return LoomflowError(message, code=code)
