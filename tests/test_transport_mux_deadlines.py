"""A multiplexed call whose deadline passes answers DEADLINE_EXCEEDED, on uvloop as on asyncio.

The servers run uvloop, and so does the Agent's client side of the streams.
uvloop's timers run on a clock cached once per loop iteration, at millisecond
grain, so ``asyncio.timeout`` may fire slightly *before* ``time.monotonic()``
reaches the deadline. The client used to check the wall clock after the timeout
fired and, finding it not yet passed, let the bare ``TimeoutError`` escape: the
Agent answered INTERNAL where the fault-injection smoke test
(tests/reliability/test_fault_smoke.py) expects DEADLINE_EXCEEDED. Here the
Policy process is frozen (SIGSTOP) under forty calls with staggered deadlines,
each of which must end as DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import uvloop

from loomflow.kernel.transport.mux_client import MuxChannel, MuxSettings
from loomflow.testing.processes import ServeProcess
from loomflow.v1 import policy_pb2, policy_pb2_grpc, tenancy_pb2


@pytest.fixture
def policy(tmp_path: Path) -> Iterator[ServeProcess]:
    env = {"LOOMFLOW_INSECURE": "true", "LOOMFLOW_TRACING": "false"}
    process = ServeProcess("policy", tmp_path, env=env).start()
    try:
        yield process
    finally:
        assert process.process is not None
        os.kill(process.process.pid, signal.SIGCONT)
        process.stop()


def get_policy(user: str) -> policy_pb2.GetPolicyRequest:
    return policy_pb2.GetPolicyRequest(scope=tenancy_pb2.UserScope(user_id=user))


async def codes_while_frozen(process: ServeProcess) -> list[str]:
    assert process.process is not None
    channel = grpc.aio.insecure_channel(process.address)
    mux = MuxChannel(channel, MuxSettings(streams=1, max_in_flight=64))
    stub = policy_pb2_grpc.PolicyServiceStub(mux.as_channel())
    try:
        await stub.GetPolicy(get_policy("warm"), timeout=10)  # the stream is open before the freeze
        os.kill(process.process.pid, signal.SIGSTOP)
        calls = [stub.GetPolicy(get_policy(f"tenant-{n}"), timeout=0.02 + n * 0.007) for n in range(40)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        return [r.code().name if isinstance(r, grpc.aio.AioRpcError) else type(r).__name__ for r in results]
    finally:
        os.kill(process.process.pid, signal.SIGCONT)
        await mux.close()
        await channel.close()


def test_a_passed_deadline_is_deadline_exceeded_on_uvloop(policy: ServeProcess) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        codes = runner.run(codes_while_frozen(policy))
    assert set(codes) == {"DEADLINE_EXCEEDED"}, codes
