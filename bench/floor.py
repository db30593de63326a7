"""Floor servers: the real kernel hosting a service whose handlers answer a constant.

What the kernel and gRPC cost alone — authentication, validation, metrics, logging limits and the
uvloop event loop that ``loomflow serve`` runs on — with no budget or policy work behind them. The
floor servicers are ordinary servicers registered through :class:`loomflow.kernel.hosting.HostedService`,
exactly as the real ones are; nothing of the real service is patched.

    python bench/floor.py budget     # settings from LOOMFLOW_* as for `loomflow serve`

This file imports nothing from ``bench``, so it runs as a plain script (``FLOOR_COMMANDS``).
"""

from __future__ import annotations

import loomflow.kernel.grpc_runtime  # noqa: F401  # before grpc: gRPC core reads its settings on import

# isort: split
import sys
from pathlib import Path
from typing import Any

import grpc

from loomflow.kernel import config, eventloop
from loomflow.kernel.auth import AuthSettings
from loomflow.kernel.hosting import HostedService
from loomflow.kernel.server import Server
from loomflow.kernel.settings import ServerSettings
from loomflow.v1 import budget_pb2, budget_pb2_grpc, policy_pb2, policy_pb2_grpc


class BudgetFloor(budget_pb2_grpc.BudgetServiceServicer):
    """Reserve and Commit that grant everything and record nothing (SetLimits and GetStatus too,
    which the benchmark calls around the timed pairs)."""

    async def SetLimits(self, request: budget_pb2.SetLimitsRequest, context: Any) -> budget_pb2.SetLimitsResponse:
        return budget_pb2.SetLimitsResponse()

    async def GetStatus(self, request: budget_pb2.GetStatusRequest, context: Any) -> budget_pb2.GetStatusResponse:
        return budget_pb2.GetStatusResponse()

    async def Reserve(self, request: budget_pb2.ReserveRequest, context: Any) -> budget_pb2.ReserveResponse:
        return budget_pb2.ReserveResponse(reservation_id="r1.AAAAAAAAAAAAAAAAAAAAAA.1.echo")

    async def Commit(self, request: budget_pb2.CommitRequest, context: Any) -> budget_pb2.CommitResponse:
        return budget_pb2.CommitResponse()


class PolicyFloor(policy_pb2_grpc.PolicyServiceServicer):
    """A Check that decides nothing: every call allowed."""

    async def Check(self, request: policy_pb2.CheckRequest, context: Any) -> policy_pb2.CheckResponse:
        return policy_pb2.CheckResponse(decision_id="dec_AAAAAAAAAAAAAAAAAAAAAA", decision=policy_pb2.DECISION_ALLOW)


# The floors implement only the RPCs the benchmarks time; the generated base answers UNIMPLEMENTED to the
# rest at run time, which its type stubs (every RPC abstract) cannot express: hence the ignores.
def _register_budget(server: grpc.aio.Server) -> None:
    budget_pb2_grpc.add_BudgetServiceServicer_to_server(BudgetFloor(), server)  # type: ignore[abstract]


def _register_policy(server: grpc.aio.Server) -> None:
    policy_pb2_grpc.add_PolicyServiceServicer_to_server(PolicyFloor(), server)  # type: ignore[abstract]


FLOORS: dict[str, HostedService] = {
    "budget": HostedService(
        "budget", budget_pb2.DESCRIPTOR.services_by_name["BudgetService"].full_name, _register_budget
    ),
    "policy": HostedService(
        "policy", policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name, _register_policy
    ),
}


def command(service: str) -> tuple[str, ...]:
    """The program a :class:`loomflow.testing.processes.ServeProcess` runs for ``service``'s floor."""
    return (sys.executable, str(Path(__file__).resolve()), service)


def serve(service: str) -> int:
    """Serves ``service``'s floor with the settings ``loomflow serve`` would read, until SIGTERM."""
    server = Server(config.load("", ServerSettings), config.load("auth", AuthSettings), [FLOORS[service]])
    eventloop.run(server.run_until_signal(), "uvloop")  # the loop `loomflow serve` runs on
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1]))
