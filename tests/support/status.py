"""Reading rich error details off a failed call."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2


def bad_request_violations(error: grpc.RpcError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """The ``google.rpc.BadRequest`` field violations a status carries (sync or aio errors)."""
    read: Any = getattr(error, "trailing_metadata", None)  # aio errors and sync ones (grpc.Call) both have it
    trailing: Any = read() if callable(read) else ()
    raw = next((v for k, v in (trailing or ()) if k == "grpc-status-details-bin"), None)
    if raw is None:
        return []
    status = status_pb2.Status.FromString(raw if isinstance(raw, bytes) else raw.encode())
    found: list[error_details_pb2.BadRequest.FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend(bad.field_violations)
    return found


def bad_request_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The field paths of the ``google.rpc.BadRequest`` violations a status carries."""
    return [v.field for v in bad_request_violations(error)]
