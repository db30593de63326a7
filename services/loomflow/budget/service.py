"""Hosts the BudgetService. Not implemented yet: every RPC answers UNIMPLEMENTED."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from loomflow.kernel.hosting import HostedService, ServiceContext
from loomflow.v1 import budget_pb2, budget_pb2_grpc

SECTION = "budget"


@dataclass(frozen=True)
class Settings:
    pass


def build(ctx: ServiceContext) -> HostedService:
    servicer = budget_pb2_grpc.BudgetServiceServicer()  # type: ignore[abstract]  # all RPCs UNIMPLEMENTED until built

    def register(server: grpc.aio.Server) -> None:
        budget_pb2_grpc.add_BudgetServiceServicer_to_server(servicer, server)

    return HostedService(
        name=SECTION,
        full_name=budget_pb2.DESCRIPTOR.services_by_name["BudgetService"].full_name,
        register=register,
        accepts_end_users=SECTION == "agent",
    )
