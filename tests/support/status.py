"""Reading rich error details off a failed call."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2


def _status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    raw = next((v for k, v in (error.trailing_metadata() or ()) if k == "grpc-status-details-bin"), None)
    if raw is None:
        return status_pb2.Status()
    return status_pb2.Status.FromString(raw if isinstance(raw, bytes) else raw.encode())


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    """The ``google.rpc.ErrorInfo`` a status carries, if any."""
    for detail in _status(error).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None


def bad_request_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The field paths of the ``google.rpc.BadRequest`` violations a status carries."""
    status = _status(error)
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    return fields
