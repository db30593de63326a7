"""Attacks on the multiplexed stream (MuxService) of a secure `loomflow serve` process.

The stream carries the internal services' calls for an internal caller, so it must be
no back door: every forged, expired or end-user credential is refused when the stream
opens (and recorded in the security log as a refused call is), and a service that may
open one still passes every per-call check: a call it may not make fails alone and the
stream goes on (kernel/transport/mux_server.py).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import grpc
import pytest

from loomflow.kernel.auth import Role, mint_token
from loomflow.testing.processes import ServeProcess
from loomflow.v1 import audit_pb2, budget_pb2, mux_pb2, policy_pb2, tenancy_pb2
from tests.reliability.test_auth_attacks import ATTACKS, AUTH, SECRET, Attack, bearer, wait_for_line

MULTIPLEX = "/loomflow.v1.MuxService/Multiplex"


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    env = {
        "LOOMFLOW_INSECURE": "false",
        "LOOMFLOW_AUTH_JWT_SECRET": SECRET,
        "LOOMFLOW_TRACING": "false",
        "LOOMFLOW_LOG_LEVEL": "warning",
        **{f"LOOMFLOW_AUDIT_{k}": secrets.token_hex(32) for k in ("HMAC_KEY", "SIGNING_KEY", "PAYLOAD_KEY")},
    }
    process = ServeProcess("memory,budget,policy,audit", tmp_path_factory.mktemp("mux"), env=env).start()
    try:
        yield process
    finally:
        process.stop()


def exchange(
    serve: ServeProcess, metadata: tuple[tuple[str, str], ...], *calls: mux_pb2.MuxCall
) -> list[mux_pb2.MuxReply]:
    """Opens a stream, sends ``calls`` in one write, reads every reply (raises the stream's own error)."""
    with grpc.insecure_channel(serve.address) as channel:
        stream = channel.stream_stream(
            MULTIPLEX,
            request_serializer=mux_pb2.MultiplexRequest.SerializeToString,
            response_deserializer=mux_pb2.MultiplexResponse.FromString,
        )
        batches = stream(iter([mux_pb2.MultiplexRequest(calls=calls)]), metadata=metadata, timeout=15)
        return sorted((reply for batch in batches for reply in batch.replies), key=lambda r: r.id)


def status_call(call_id: int, victim: str) -> mux_pb2.MuxCall:
    return mux_pb2.MuxCall(
        id=call_id, budget_get_status=budget_pb2.GetStatusRequest(scope=tenancy_pb2.UserScope(user_id=victim))
    )


STREAM_ATTACKS = [
    *ATTACKS,
    Attack("the_victims_own_token", lambda v: bearer(mint_token(AUTH, v)), grpc.StatusCode.PERMISSION_DENIED),
]


@pytest.mark.parametrize("attack", STREAM_ATTACKS, ids=lambda a: a.name)
def test_a_forged_expired_or_end_user_credential_cannot_open_a_stream(serve: ServeProcess, attack: Attack) -> None:
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    with pytest.raises(grpc.RpcError) as refused:
        exchange(serve, attack.metadata(victim), status_call(1, victim))
    code = refused.value.code()
    end_user = attack.agent_code is grpc.StatusCode.PERMISSION_DENIED
    assert code is (grpc.StatusCode.PERMISSION_DENIED if end_user else grpc.StatusCode.UNAUTHENTICATED), attack.name
    who = attack.claimed(victim)

    def names_the_attempt(line: dict[str, object]) -> bool:
        named = line.get("claimed_subject") == who or line.get("principal") == f"user:{who}"
        return line.get("rpc") == "loomflow.v1.MuxService/Multiplex" and line.get("code") == code.name and named

    line = wait_for_line(serve, names_the_attempt)
    assert line is not None, f"{attack.name}: no auth_refused line for the refused stream"


def test_a_service_stream_still_checks_every_call_and_a_refused_call_fails_alone(serve: ServeProcess) -> None:
    service = bearer(mint_token(AUTH, "loomflow-agent", Role.SERVICE))
    everyone = tenancy_pb2.UserScope(all_tenants=tenancy_pb2.AllTenants())
    replies = exchange(
        serve,
        service,
        status_call(1, "alice"),
        mux_pb2.MuxCall(id=2, audit_query=audit_pb2.QueryRequest(scope=everyone)),  # an operator's reach
        status_call(3, "__jeeves_anon_user__"),  # the anonymous bucket's storage name
        mux_pb2.MuxCall(id=4, policy_check=policy_pb2.CheckRequest(scope=tenancy_pb2.UserScope(user_id="bob"))),
        mux_pb2.MuxCall(id=5),  # no request at all
        status_call(6, "carol"),
    )
    codes = {
        reply.id: grpc.StatusCode.OK.value[0] if reply.HasField("response") else reply.error.code for reply in replies
    }
    name = {code.value[0]: code.name for code in grpc.StatusCode}
    assert {i: name[c] for i, c in codes.items()} == {
        1: "OK",
        2: "PERMISSION_DENIED",
        3: "INVALID_ARGUMENT",
        4: "INVALID_ARGUMENT",
        5: "INVALID_ARGUMENT",
        6: "OK",
    }
