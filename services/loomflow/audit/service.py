"""Hosts the AuditService. Not implemented yet: every RPC answers UNIMPLEMENTED."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from loomflow.kernel.hosting import HostedService, ServiceContext
from loomflow.v1 import audit_pb2, audit_pb2_grpc

SECTION = "audit"


@dataclass(frozen=True)
class Settings:
    pass


def build(ctx: ServiceContext) -> HostedService:
    servicer = audit_pb2_grpc.AuditServiceServicer()  # type: ignore[abstract]  # all RPCs UNIMPLEMENTED until built

    def register(server: grpc.aio.Server) -> None:
        audit_pb2_grpc.add_AuditServiceServicer_to_server(servicer, server)

    return HostedService(
        name=SECTION,
        full_name=audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
        register=register,
        accepts_end_users=SECTION == "agent",
    )
