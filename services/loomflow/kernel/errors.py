"""Domain errors and their gRPC status.

Servicers and stores raise these; the kernel interceptor turns them into a
status with ``google.rpc`` details. Nothing below the servicer imports grpc.
Any other exception becomes INTERNAL with a generic message (the traceback is
logged, never sent).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str
    reason: str = ""


class ServiceError(Exception):
    """Base of every error a client is meant to see."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> list[any_pb2.Any]:
        return []


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.violations = violations or []

    @classmethod
    def field(cls, field: str, description: str, reason: str = "") -> InvalidArgument:
        return cls(f"{field}: {description}", [FieldViolation(field, description, reason)])

    def details(self) -> list[any_pb2.Any]:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description, reason=v.reason)
                for v in self.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        return [packed]


class NotFound(ServiceError):
    """Also what a record of another tenant answers, so existence does not leak."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Aborted(ServiceError):
    """A concurrency conflict, e.g. a stale expected version: re-read and retry."""

    code = grpc.StatusCode.ABORTED


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(ServiceError):
    """A quota or rate limit refused the call; `limit` names which."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, limit: str = "") -> None:
        super().__init__(message)
        self.limit = limit

    def details(self) -> list[any_pb2.Any]:
        if not self.limit:
            return []
        info = error_details_pb2.ErrorInfo(reason="LIMIT_EXCEEDED", domain="loomflow", metadata={"limit": self.limit})
        packed = any_pb2.Any()
        packed.Pack(info)
        return [packed]


class Unavailable(ServiceError):
    """A dependency (database, cache, downstream service) cannot be reached; retry later."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


def to_rpc_status(code: grpc.StatusCode, message: str, details: list[any_pb2.Any]) -> status_pb2.Status:
    numeric: int = code.value[0]
    return status_pb2.Status(code=numeric, message=message, details=details)


INTERNAL_MESSAGE = "internal error; the server logged the details"

__all__ = [
    "Aborted",
    "AlreadyExists",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "ServiceError",
    "Unauthenticated",
    "Unavailable",
    "code_pb2",
    "to_rpc_status",
]
