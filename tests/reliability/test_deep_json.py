"""Free-form JSON nested too deeply: INVALID_ARGUMENT naming the depth limit, on every RPC that takes it.

Tool arguments nested 60 or 120 levels through the Agent's ``/call`` syntax answered
INTERNAL, and 400 levels wrote a ~150 KB RecursionError traceback to the log. Now
every Struct field of every request (Policy Check, RequestApproval, ResolveApproval,
Audit Append) and the ``/call`` arguments of a prompt are refused at the edge with a
``json.max_depth`` field violation, whether the bytes decode (a Struct at 33 levels,
lists at 40) or not (60, 120, 400 levels are past protobuf's own decoder limit). A
model proposing such arguments gets a tool error instead (nothing runs). And the log
stays bounded: see test_log_limits.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from loomflow.kernel.jsondepth import MAX_JSON_DEPTH
from loomflow.testing.processes import ServeProcess
from loomflow.testing.suite import running_suite
from loomflow.v1 import agent_pb2, agent_pb2_grpc, tenancy_pb2
from tests.reliability import wire
from tests.reliability.conftest import INSECURE_ENV
from tests.reliability.rpcs import STRUCT_RPCS, Rpc, struct_fields
from tests.support.status import bad_request_violations

DEPTHS = (60, 120, 400)
SCOPE = tenancy_pb2.UserScope(user_id="nester")


@pytest.fixture(scope="module")
def served_with_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """Its own `loomflow serve` (warnings logged), so the log it writes can be read back."""
    folder: Path = tmp_path_factory.mktemp("deep-json")
    process = ServeProcess(
        "memory,budget,policy,audit,agent", folder, env={**INSECURE_ENV, "LOOMFLOW_LOG_LEVEL": "warning"}
    ).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def channel(served_with_log: ServeProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(served_with_log.address) as opened:
        yield opened


def nested_object(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def nested_lists(depth: int) -> struct_pb2.Value:
    """``[[[…]]]`` ``depth`` levels: two messages per level, so 40 levels still decode."""
    value = struct_pb2.Value(list_value=struct_pb2.ListValue())
    for _ in range(depth - 1):
        outer = struct_pb2.Value(list_value=struct_pb2.ListValue())
        outer.list_value.values.append(value)
        value = outer
    return value


def assert_names_the_depth_limit(error: grpc.RpcError, where: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{where}: {error.code().name} {error.details()}"
    violations = bad_request_violations(error)
    assert any(v.reason == "json.max_depth" for v in violations), f"{where}: no depth violation in {violations}"
    assert any(f"limit is {MAX_JSON_DEPTH} levels" in v.description for v in violations), violations


def send_raw(channel: grpc.Channel, rpc: Rpc, payload: bytes) -> grpc.RpcError:
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
    raise AssertionError(f"{rpc.id} accepted a Struct nested past the limit")


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("rpc", STRUCT_RPCS, ids=[r.id for r in STRUCT_RPCS])
def test_a_struct_nested_past_the_decoder_answers_invalid_argument_naming_the_limit(
    channel: grpc.Channel, rpc: Rpc, depth: int
) -> None:
    (field, *_) = struct_fields(rpc)
    payload = wire.scope_bytes(b"nester") + wire.length_delimited(field.number, wire.nested_struct_bytes(depth))
    assert_names_the_depth_limit(send_raw(channel, rpc, payload), f"{rpc.id} at {depth}")


@pytest.mark.parametrize("shape", ["object-33", "lists-40"])
@pytest.mark.parametrize("rpc", STRUCT_RPCS, ids=[r.id for r in STRUCT_RPCS])
def test_json_that_decodes_but_nests_past_the_limit_is_refused_naming_the_field(
    channel: grpc.Channel, rpc: Rpc, shape: str
) -> None:
    (field, *_) = struct_fields(rpc)
    request = rpc.request_class()(scope=SCOPE)
    struct = getattr(request, field.name)
    if shape == "object-33":
        struct.update(nested_object(MAX_JSON_DEPTH + 1))
    else:
        struct.fields["a"].CopyFrom(nested_lists(40))
    with pytest.raises(grpc.RpcError) as refused:
        rpc.call(channel, request, timeout=10)
    assert_names_the_depth_limit(refused.value, f"{rpc.id} {shape}")
    assert field.name in [v.field for v in bad_request_violations(refused.value)]


@pytest.mark.parametrize("depth", DEPTHS)
def test_agent_call_syntax_with_deep_arguments_answers_invalid_argument(channel: grpc.Channel, depth: int) -> None:
    agent = agent_pb2_grpc.AgentServiceStub(channel)
    prompt = f"/call calculator {json.dumps(nested_object(depth))}"
    with pytest.raises(grpc.RpcError) as refused:
        agent.Run(agent_pb2.RunRequest(scope=SCOPE, options=agent_pb2.RunOptions(prompt=prompt)), timeout=30)
    assert_names_the_depth_limit(refused.value, f"Agent.Run /call at {depth}")
    assert [v.field for v in bad_request_violations(refused.value)] == ["options.prompt"]


def test_deep_json_leaves_no_traceback_in_the_log(channel: grpc.Channel, served_with_log: ServeProcess) -> None:
    agent = agent_pb2_grpc.AgentServiceStub(channel)
    prompt = f"/call calculator {json.dumps(nested_object(400))}"
    for _ in range(5):
        with pytest.raises(grpc.RpcError):
            agent.Run(agent_pb2.RunRequest(scope=SCOPE, options=agent_pb2.RunOptions(prompt=prompt)), timeout=30)
    log = (served_with_log.data_dir / f"serve-{served_with_log.port}.log").read_text(errors="replace")
    assert "RecursionError" not in log
    assert "Traceback" not in log, log[-2000:]


async def test_a_model_proposing_deep_arguments_gets_a_tool_error_and_nothing_runs(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    deep = nested_object(120)
    turns = [{"tool_calls": [{"name": "calculator", "arguments": {"expression": "1", "x": deep}}]}, {"text": "ok"}]
    script.write_text(json.dumps([{"turns": turns}]))
    overrides = {"agent": {"model": "scripted", "script_file": str(script)}}
    async with running_suite(tmp_path / "data", overrides=overrides) as suite:
        agent = agent_pb2_grpc.AgentServiceStub(suite.channel)
        reply = await agent.Run(agent_pb2.RunRequest(scope=SCOPE, options=agent_pb2.RunOptions(prompt="go")))
    (record,) = reply.tool_calls
    assert not record.executed, "a tool must not run with arguments past the depth limit"
    assert f"limit is {MAX_JSON_DEPTH} levels" in record.result, record.result
