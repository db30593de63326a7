"""Hosts the MemoryService. Not implemented yet: every RPC answers UNIMPLEMENTED."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from loomflow.kernel.hosting import HostedService, ServiceContext
from loomflow.v1 import memory_pb2, memory_pb2_grpc

SECTION = "memory"


@dataclass(frozen=True)
class Settings:
    pass


def build(ctx: ServiceContext) -> HostedService:
    servicer = memory_pb2_grpc.MemoryServiceServicer()  # type: ignore[abstract]  # all RPCs UNIMPLEMENTED until built

    def register(server: grpc.aio.Server) -> None:
        memory_pb2_grpc.add_MemoryServiceServicer_to_server(servicer, server)

    return HostedService(
        name=SECTION,
        full_name=memory_pb2.DESCRIPTOR.services_by_name["MemoryService"].full_name,
        register=register,
        accepts_end_users=SECTION == "agent",
    )
