"""Hosts the AgentService. Not implemented yet: every RPC answers UNIMPLEMENTED."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from loomflow.kernel.hosting import HostedService, ServiceContext
from loomflow.v1 import agent_pb2, agent_pb2_grpc

SECTION = "agent"


@dataclass(frozen=True)
class Settings:
    pass


def build(ctx: ServiceContext) -> HostedService:
    servicer = agent_pb2_grpc.AgentServiceServicer()  # type: ignore[abstract]  # all RPCs UNIMPLEMENTED until built

    def register(server: grpc.aio.Server) -> None:
        agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)

    return HostedService(
        name=SECTION,
        full_name=agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
        register=register,
        accepts_end_users=SECTION == "agent",
    )
