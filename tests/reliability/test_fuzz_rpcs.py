"""Property-based fuzzing of every RPC of every service, through real gRPC to a real server process.

For any request hypothesis can build from the descriptors (see messages.py), the
answer is a well-defined status: success or a client error the contract names —
never INTERNAL, never UNKNOWN, never a dropped connection — and the server
process is still alive, with bounded memory, when the fuzzing is over.
LOOMFLOW_FUZZ_EXAMPLES raises the number of examples per RPC (default 15).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loomflow.testing.processes import ServeProcess
from loomflow.v1 import (
    budget_pb2,
    budget_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    tenancy_pb2,
)
from tests.reliability import messages
from tests.reliability.rpcs import ALL_RPCS, Rpc

# What a correct server may answer to arbitrary input. UNAVAILABLE, INTERNAL, UNKNOWN,
# DATA_LOSS and UNIMPLEMENTED are bugs here: no dependency is down and every RPC exists.
WELL_DEFINED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
}
OPEN_STREAMS = {"PolicyService.WatchApprovals"}
"""Streams that stay open until the client leaves: their deadline ending them is the normal case."""

EXAMPLES = int(os.environ.get("LOOMFLOW_FUZZ_EXAMPLES", "15"))
RSS_CEILING_MIB = 1024


@pytest.fixture(scope="module")
def channel(served: ServeProcess) -> Iterator[grpc.Channel]:
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    with grpc.insecure_channel(served.address, options=options) as opened:
        _seed_real_ids(opened)
        yield opened


def _seed_real_ids(channel: grpc.Channel) -> None:
    """Real records for the fuzz tenants, so id fields guess ids that exist (for some tenant)."""
    memory = memory_pb2_grpc.MemoryServiceStub(channel)
    budget = budget_pb2_grpc.BudgetServiceStub(channel)
    policy = policy_pb2_grpc.PolicyServiceStub(channel)
    for tenant in messages.TENANTS:
        scope = tenancy_pb2.UserScope(user_id=tenant)
        episode = memory.Remember(memory_pb2.RememberRequest(scope=scope, input=f"{tenant} note"), timeout=10)
        fact = memory.AssertFact(
            memory_pb2.AssertFactRequest(scope=scope, subject=tenant, predicate="likes", object="tea"), timeout=10
        )
        reservation = budget.Reserve(
            budget_pb2.ReserveRequest(scope=scope, call_id=f"{tenant}-seed", estimate=budget_pb2.Usage(input_tokens=5)),
            timeout=10,
        )
        approval = policy.RequestApproval(
            policy_pb2.RequestApprovalRequest(scope=scope, tool_name="deploy", reason="seed"), timeout=10
        )
        messages.KNOWN_IDS.extend(
            [episode.episode.id, fact.fact.id, reservation.reservation_id, approval.approval.approval_id, "seed-call"]
        )


def _timeout(rpc: Rpc) -> float:
    if rpc.id in OPEN_STREAMS:
        return 0.3
    return 15.0


@pytest.mark.parametrize("rpc", ALL_RPCS, ids=[r.id for r in ALL_RPCS])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_request_gets_a_well_defined_status_never_internal(
    rpc: Rpc, channel: grpc.Channel, served: ServeProcess, data: st.DataObject
) -> None:
    request = data.draw(messages.requests(rpc.method.input_type), label="request")
    code, details = grpc.StatusCode.OK, ""
    try:
        rpc.call(channel, request, _timeout(rpc))
    except grpc.RpcError as error:
        code, details = error.code(), error.details() or ""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and rpc.id in OPEN_STREAMS:
        return
    assert alive(served), f"the server died on {rpc.id}: {served.log_tail()}"
    assert code in WELL_DEFINED, f"{rpc.id} answered {code.name}: {details}"


def alive(process: ServeProcess) -> bool:
    return process.process is not None and process.process.poll() is None


def test_the_server_survived_the_fuzzing_with_bounded_memory(served: ServeProcess, channel: grpc.Channel) -> None:
    """Runs after the fuzzing above (file order): the process is alive, serving, and not bloated."""
    assert alive(served), served.log_tail()
    assert served.process is not None
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    rss_mib = psutil.Process(served.process.pid).memory_info().rss / 2**20
    assert rss_mib < RSS_CEILING_MIB, f"the server holds {rss_mib:.0f} MiB after fuzzing"
