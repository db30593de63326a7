"""Who may run the agent for whom: end-user tokens bound to user_id, service credentials inside.

Through real gRPC with real JWTs: a forged token, a token for bob used with
user_id="alice", an expired token and a missing one are all refused; the internal
services refuse end-user tokens; HS256, RS256 and EdDSA keys all work, and the Agent
mints its own service credential from the configured key.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from loomflow import cli
from loomflow.client import (
    Agent,
    AuditClient,
    BudgetClient,
    MemoryClient,
    PermissionDenied,
    PolicyClient,
    Unauthenticated,
)
from loomflow.kernel import errors
from loomflow.kernel.auth import AuthSettings, Role, TokenVerifier, mint_token
from loomflow.kernel.config import ConfigError
from loomflow.testing.suite import TEST_JWT_SECRET, running_suite
from tests.agent.conftest import Tenancy, secure_suite, token


def forged(subject: str) -> str:
    claims = {"sub": subject, "role": "user", "iss": "loomflow", "aud": "loomflow", "exp": 4102444800}
    return jwt.encode(claims, "not-the-server-secret-0123456789abcdef", algorithm="HS256")


@pytest.mark.parametrize(
    ("bearer", "refused_as"),
    [
        pytest.param(lambda: forged("alice"), Unauthenticated, id="forged"),
        pytest.param(lambda: token("bob"), PermissionDenied, id="bob_for_alice"),
        pytest.param(lambda: token("alice", ttl_seconds=-60), Unauthenticated, id="expired"),
        pytest.param(lambda: None, Unauthenticated, id="missing"),
        pytest.param(lambda: jwt.encode({"sub": "alice"}, "", algorithm="none"), Unauthenticated, id="alg_none"),
    ],
)
async def test_the_agent_refuses_tokens_that_do_not_prove_the_user(
    tenancy: Tenancy, bearer: Callable[[], str | None], refused_as: type[Exception]
) -> None:
    async with Agent(tenancy.address, token=bearer()) as agent:
        with pytest.raises(refused_as):
            await agent.run("hello", user_id="alice")
        with pytest.raises(refused_as):
            async for _ in agent.stream("hello", user_id="alice"):
                pass
    assert (await tenancy.budget().get_status(user_id="alice")).total.total_tokens == 0, "nothing ran"


async def test_the_users_own_token_runs_and_cannot_name_the_anonymous_partition(tenancy: Tenancy) -> None:
    agent = tenancy.agent("alice")
    assert (await agent.run("hello", user_id="alice")).output == "hello"
    with pytest.raises(PermissionDenied):
        await agent.run("hello", anonymous=True)


async def test_operators_and_services_may_run_for_any_user(tenancy: Tenancy) -> None:
    for role in (Role.OPERATOR, Role.SERVICE):
        result = await tenancy.agent("backend", role=role).run(f"on behalf, as {role.value}", user_id="carol")
        assert result.output.startswith(f"on behalf, as {role.value}")


async def test_internal_services_refuse_end_user_tokens(tenancy: Tenancy) -> None:
    channel, alice = tenancy.suite.channel, token("alice")
    calls = [
        MemoryClient(channel, token=alice).recall("x", user_id="alice"),
        BudgetClient(channel, token=alice).get_status(user_id="alice"),
        PolicyClient(channel, token=alice).get_policy(user_id="alice"),
        AuditClient(channel, token=alice).verify(user_id="alice"),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied, match="end-user credentials"):
            await call


def write_keys(folder: Path, kind: str) -> tuple[str, str]:
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    private = folder / f"{kind}.key"
    public = folder / f"{kind}.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return str(private), str(public)


def loomflow_token(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["token", *args]) == 0
    return out.getvalue().strip()


@pytest.mark.parametrize(("kind", "algorithm"), [("rsa", "RS256"), ("ed25519", "EdDSA")])
async def test_asymmetric_keys_sign_user_tokens_and_the_agents_own_credential(
    tmp_path: Path, kind: str, algorithm: str
) -> None:
    private, public = write_keys(tmp_path, kind)
    auth = {"jwt_secret": "", "jwt_public_key_file": public, "jwt_private_key_file": private}
    user_token = loomflow_token("alice", "--auth-jwt-private-key-file", private)
    assert jwt.get_unverified_header(user_token)["alg"] == algorithm
    async with secure_suite(tmp_path / "data", overrides={"auth": auth}) as tenancy:
        async with Agent(tenancy.address, token=user_token) as agent:
            # A full run: the Agent called memory, budget and audit with a token it minted itself.
            result = await agent.run("signed with a private key", user_id="alice")
        assert result.output == "signed with a private key"
        hs256 = mint_token(AuthSettings(jwt_secret=TEST_JWT_SECRET), "alice")
        async with Agent(tenancy.address, token=hs256) as agent:
            with pytest.raises(Unauthenticated):
                await agent.run("an HS256 token where public keys verify", user_id="alice")


async def test_a_configured_service_token_is_what_the_agent_presents(tmp_path: Path) -> None:
    auth = AuthSettings(jwt_secret=TEST_JWT_SECRET)
    service = mint_token(auth, "agent-from-config", Role.SERVICE)
    async with secure_suite(tmp_path, overrides={"auth": {"service_token": service}}) as tenancy:
        assert (await tenancy.agent("alice").run("hi", user_id="alice")).output == "hi"
    broken = mint_token(auth, "alice", Role.USER)  # an end-user token is no service credential
    async with secure_suite(tmp_path / "broken", overrides={"auth": {"service_token": broken}}) as tenancy:
        with pytest.raises(Exception, match="refused the agent's credential"):
            await tenancy.agent("alice").run("hi", user_id="alice")


async def test_an_agent_that_can_only_verify_tokens_needs_a_service_token(tmp_path: Path) -> None:
    _, public = write_keys(tmp_path, "ed25519")
    auth = {"jwt_secret": "", "jwt_public_key_file": public}
    with pytest.raises(ConfigError, match="LOOMFLOW_AUTH_SERVICE_TOKEN"):
        async with running_suite(tmp_path, services="agent", insecure=False, overrides={"auth": auth}):
            pass


def test_loomflow_token_mints_what_the_server_verifies() -> None:
    minted = loomflow_token("ops", "--role", "operator", "--ttl", "60", "--auth-jwt-secret", TEST_JWT_SECRET)
    principal = TokenVerifier(AuthSettings(jwt_secret=TEST_JWT_SECRET)).verify(minted)
    assert (principal.role, principal.subject) == (Role.OPERATOR, "ops")
    claims = jwt.decode(minted, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 60


def test_loomflow_token_without_a_key_is_a_configuration_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A data folder without the development secret `serve --insecure` keeps (which token would use).
    assert cli.main(["token", "alice", "--auth-jwt-secret", "", "--data-dir", str(tmp_path)]) == 2
    assert "no signing key" in capsys.readouterr().err


def test_a_remembered_token_is_still_refused_once_it_expires() -> None:
    verifier = TokenVerifier(AuthSettings(jwt_secret=TEST_JWT_SECRET))
    short = mint_token(AuthSettings(jwt_secret=TEST_JWT_SECRET), "alice", ttl_seconds=2)
    assert verifier.verify(short).subject == "alice"
    assert verifier.verify(short).subject == "alice", "verified again from memory"
    expires = jwt.decode(short, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    with pytest.raises(errors.Unauthenticated, match="token expired"):
        verifier.verify(short)
