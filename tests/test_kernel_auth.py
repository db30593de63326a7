"""Who may call what: tokens, end users vs services vs operators, through real gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import jwt
import pytest

from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.testing.suite import TEST_JWT_SECRET, RunningSuite, running_suite
from loomflow.v1 import memory_pb2, memory_pb2_grpc, tenancy_pb2

AUTH = AuthSettings(jwt_secret=TEST_JWT_SECRET)


@pytest.fixture
async def secure_suite(tmp_path: Path) -> AsyncIterator[RunningSuite]:
    async with running_suite(tmp_path, services="memory", insecure=False) as running:
        yield running


async def recall(suite: RunningSuite, token: str | None, user: str = "alice") -> grpc.StatusCode:
    stub = memory_pb2_grpc.MemoryServiceStub(suite.channel)
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else None
    request = memory_pb2.RecallRequest(scope=tenancy_pb2.UserScope(user_id=user), query="hi")
    try:
        await stub.Recall(request, metadata=metadata, timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def passed_auth(code: grpc.StatusCode) -> bool:
    return code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


async def test_missing_token_is_unauthenticated(secure_suite: RunningSuite) -> None:
    assert await recall(secure_suite, None) == grpc.StatusCode.UNAUTHENTICATED


async def test_service_and_operator_tokens_reach_internal_services(secure_suite: RunningSuite) -> None:
    assert passed_auth(await recall(secure_suite, mint_token(AUTH, "agent", Role.SERVICE)))
    assert passed_auth(await recall(secure_suite, mint_token(AUTH, "ops", Role.OPERATOR)))


async def test_end_user_token_cannot_call_internal_services(secure_suite: RunningSuite) -> None:
    token = mint_token(AUTH, "alice", Role.USER)
    assert await recall(secure_suite, token, user="alice") == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(jwt.encode({"sub": "agent", "role": "service"}, key="", algorithm="none"), id="alg_none"),
        pytest.param(
            jwt.encode(
                {"sub": "agent", "role": "service", "iss": "loomflow", "aud": "loomflow", "exp": 9999999999},
                "wrong-key-0123456789abcdef0123456789",
                algorithm="HS256",
            ),
            id="wrong_key",
        ),
        pytest.param(mint_token(AUTH, "agent", Role.SERVICE, ttl_seconds=-10), id="expired"),
        pytest.param(
            mint_token(AuthSettings(jwt_secret=TEST_JWT_SECRET, jwt_audience="elsewhere"), "agent", Role.SERVICE),
            id="wrong_audience",
        ),
        pytest.param("not-a-jwt", id="garbage"),
    ],
)
async def test_bad_tokens_are_unauthenticated(secure_suite: RunningSuite, token: str) -> None:
    assert await recall(secure_suite, token) == grpc.StatusCode.UNAUTHENTICATED


async def test_duplicated_authorization_metadata_is_refused(secure_suite: RunningSuite) -> None:
    stub = memory_pb2_grpc.MemoryServiceStub(secure_suite.channel)
    token = mint_token(AUTH, "agent", Role.SERVICE)
    request = memory_pb2.RecallRequest(scope=tenancy_pb2.UserScope(user_id="alice"), query="hi")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Recall(
            request, metadata=(("authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")), timeout=5
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_secure_server_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no token key configured"):
        async with running_suite(tmp_path, services="memory", insecure=False, overrides={"auth": {"jwt_secret": ""}}):
            pass
