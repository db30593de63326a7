"""Hosts the PolicyService. Not implemented yet: every RPC answers UNIMPLEMENTED."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from loomflow.kernel.hosting import HostedService, ServiceContext
from loomflow.v1 import policy_pb2, policy_pb2_grpc

SECTION = "policy"


@dataclass(frozen=True)
class Settings:
    pass


def build(ctx: ServiceContext) -> HostedService:
    servicer = policy_pb2_grpc.PolicyServiceServicer()  # type: ignore[abstract]  # all RPCs UNIMPLEMENTED until built

    def register(server: grpc.aio.Server) -> None:
        policy_pb2_grpc.add_PolicyServiceServicer_to_server(servicer, server)

    return HostedService(
        name=SECTION,
        full_name=policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name,
        register=register,
        accepts_end_users=SECTION == "agent",
    )
