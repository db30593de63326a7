"""Requests no client library would send: corrupt bytes, bad UTF-8, nesting past the decoder's
limit, messages over the size limit — each answered with a defined status on every RPC, and the
server keeps serving. And answers that would outgrow one message are kept deliverable."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loomflow.testing.processes import ServeProcess
from loomflow.v1 import agent_pb2, agent_pb2_grpc, budget_pb2, budget_pb2_grpc, memory_pb2, memory_pb2_grpc, tenancy_pb2
from tests.reliability import wire
from tests.reliability.rpcs import ALL_RPCS, STRUCT_RPCS, Rpc, struct_fields

MAX_MESSAGE = 4 * 1024 * 1024  # the server's default --max-message-bytes
VALID_SCOPE = wire.scope_bytes(b"alice")


@pytest.fixture(scope="module")
def channel(served: ServeProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(served.address, options=[("grpc.max_send_message_length", -1)]) as opened:
        yield opened


def send_raw(channel: grpc.Channel, rpc: Rpc, payload: bytes) -> grpc.RpcError:
    """Sends ``payload`` as the request bytes; returns the error the server answered with."""
    identity = lambda data: data  # noqa: E731  # bytes in, bytes out
    try:
        if rpc.streaming:
            for _ in channel.unary_stream(rpc.path, request_serializer=identity, response_deserializer=identity)(
                payload, timeout=10
            ):
                pass
        else:
            channel.unary_unary(rpc.path, request_serializer=identity, response_deserializer=identity)(
                payload, timeout=10
            )
    except grpc.RpcError as error:
        return error
    raise AssertionError(f"{rpc.id} accepted {payload[:32]!r}")


def assert_serving(channel: grpc.Channel) -> None:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING, "the server stopped serving"


UNDECODABLE = {
    "corrupt_tag": b"\xff\xff\xff\xff",
    "truncated_length": b"\x0a\x80\x80\x80\x80\x01",
    "bad_utf8_user_id": wire.scope_bytes(b"al\xffice"),
    "overlong_varint": b"\x08" + b"\xff" * 11,
}


@pytest.mark.parametrize("rpc", ALL_RPCS, ids=[r.id for r in ALL_RPCS])
@pytest.mark.parametrize("payload", UNDECODABLE.values(), ids=list(UNDECODABLE))
def test_bytes_that_do_not_decode_answer_invalid_argument_never_unknown(
    channel: grpc.Channel, rpc: Rpc, payload: bytes
) -> None:
    error = send_raw(channel, rpc, payload)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{rpc.id}: {error.code().name} {error.details()}"
    assert "DecodeError" not in (error.details() or ""), "the status must not leak the server's exception"


@pytest.mark.parametrize("rpc", STRUCT_RPCS, ids=[r.id for r in STRUCT_RPCS])
def test_a_struct_nested_past_the_decoder_limit_answers_invalid_argument(channel: grpc.Channel, rpc: Rpc) -> None:
    (field, *_) = struct_fields(rpc)
    payload = VALID_SCOPE + wire.length_delimited(field.number, wire.nested_struct_bytes(200))
    error = send_raw(channel, rpc, payload)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{rpc.id}: {error.code().name} {error.details()}"
    assert_serving(channel)


@pytest.mark.parametrize("rpc", ALL_RPCS, ids=[r.id for r in ALL_RPCS])
def test_a_message_over_the_size_limit_is_refused_and_the_server_keeps_serving(channel: grpc.Channel, rpc: Rpc) -> None:
    oversize = VALID_SCOPE + wire.length_delimited(999, b"x" * (MAX_MESSAGE + 1024))  # an unknown field
    error = send_raw(channel, rpc, oversize)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{rpc.id}: {error.code().name}"
    assert_serving(channel)


def test_a_tenant_whose_episodes_are_huge_can_still_recall_and_run(channel: grpc.Channel) -> None:
    """Five 2 MiB episodes cannot fit one Recall answer: the best ones that fit are returned,
    instead of RESOURCE_EXHAUSTED on every Recall and UNAVAILABLE on every run after."""
    memory = memory_pb2_grpc.MemoryServiceStub(channel)
    agent = agent_pb2_grpc.AgentServiceStub(channel)
    scope = tenancy_pb2.UserScope(user_id=f"hoarder-{uuid.uuid4().hex[:8]}")
    half = "y" * (1024 * 1024 - 16)
    for n in range(5):
        memory.Remember(memory_pb2.RememberRequest(scope=scope, input=f"topic{n} {half}", output=half), timeout=30)
    recalled = memory.Recall(memory_pb2.RecallRequest(scope=scope, query="topic1 topic2 topic3", limit=10), timeout=30)
    assert 1 <= len(recalled.hits) < 5, "the answer keeps the best hits that fit in one message"
    assert recalled.ByteSize() <= MAX_MESSAGE
    # The fuzz tests share this server and may have left any limit behind: clear those that bind.
    budget = budget_pb2_grpc.BudgetServiceStub(channel)
    for target in (budget_pb2.LIMIT_TARGET_GLOBAL, budget_pb2.LIMIT_TARGET_DEFAULT_USER, budget_pb2.LIMIT_TARGET_USER):
        budget.SetLimits(budget_pb2.SetLimitsRequest(scope=scope, target=target), timeout=30)
    reply = agent.Run(agent_pb2.RunRequest(scope=scope, options=agent_pb2.RunOptions(prompt="hello")), timeout=60)
    assert reply.run_id, "the tenant's runs still work"
