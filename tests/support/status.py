"""Reading rich error details off a failed call."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2


def _status(error: grpc.RpcError) -> status_pb2.Status:
    read: Any = getattr(error, "trailing_metadata", None)  # aio errors and sync ones (grpc.Call) both have it
    trailing: Any = read() if callable(read) else ()
    raw = next((v for k, v in (trailing or ()) if k == "grpc-status-details-bin"), None)
    if raw is None:
        return status_pb2.Status()
    return status_pb2.Status.FromString(raw if isinstance(raw, bytes) else raw.encode())


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ``google.rpc.ErrorInfo`` a status carries, if any."""
    for detail in _status(error).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None


def bad_request_violations(error: grpc.RpcError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """The ``google.rpc.BadRequest`` field violations a status carries (sync or aio errors)."""
    found: list[error_details_pb2.BadRequest.FieldViolation] = []
    for detail in _status(error).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend(bad.field_violations)
    return found


def bad_request_fields(error: grpc.RpcError) -> list[str]:
    """The field paths of the ``google.rpc.BadRequest`` violations a status carries."""
    return [v.field for v in bad_request_violations(error)]
