"""Authentication attacks on every service of a secure `loomflow serve` process: all refused, all recorded.

Refused means UNAUTHENTICATED (no valid credential) or PERMISSION_DENIED (a valid
credential that may not do this) and nothing done. Recorded means: a
``loomflow.security`` ``auth_refused`` line in the server's log naming the RPC,
the code and who tried (the verified principal, or the subject an unverifiable
token claimed), for every service; and at the Agent, the suite's public edge,
also an ``auth_refused`` entry in the targeted tenant's audit chain, which still
verifies.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf.message import Message

from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.testing.processes import ServeProcess
from loomflow.v1 import (
    agent_pb2,
    audit_pb2,
    audit_pb2_grpc,
    budget_pb2,
    memory_pb2,
    policy_pb2,
    tenancy_pb2,
)
from tests.reliability import wire

SECRET = secrets.token_hex(32)
AUTH = AuthSettings(jwt_secret=SECRET)
UNAUTHENTICATED, PERMISSION_DENIED = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    env = {
        "LOOMFLOW_INSECURE": "false",
        "LOOMFLOW_AUTH_JWT_SECRET": SECRET,
        "LOOMFLOW_TRACING": "false",
        "LOOMFLOW_LOG_LEVEL": "warning",
        **{f"LOOMFLOW_AUDIT_{k}": secrets.token_hex(32) for k in ("HMAC_KEY", "SIGNING_KEY", "PAYLOAD_KEY")},
    }
    process = ServeProcess("memory,budget,policy,audit,agent", tmp_path_factory.mktemp("secure"), env=env).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def channel(secure: ServeProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(secure.address) as opened:
        yield opened


# -- tokens an attacker can make ----------------------------------------------------


def claims(subject: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": subject, "role": "user", "iss": "loomflow", "aud": "loomflow", "iat": now, "exp": now + 600} | extra


def signed(subject: str, key: str = SECRET, **extra: Any) -> str:
    return jwt.encode(claims(subject, **extra), key, algorithm="HS256")


def rs256_with_own_key(subject: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return jwt.encode(claims(subject), pem, algorithm="RS256")


def unsigned(subject: str) -> str:
    """``alg: none``: a header and claims, no signature."""
    return jwt.encode(claims(subject), "", algorithm="none")


def stripped_signature(subject: str) -> str:
    return signed(subject).rsplit(".", 1)[0] + "."


def expired(subject: str) -> str:
    now = int(time.time())
    return signed(subject, iat=now - 7200, exp=now - 60)


def without_expiry(subject: str) -> dict[str, Any]:
    return {k: v for k, v in claims(subject).items() if k != "exp"}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass(frozen=True)
class Attack:
    name: str
    metadata: Callable[[str], tuple[tuple[str, str], ...]]
    """The call's metadata, given the victim's user id."""
    agent_code: grpc.StatusCode
    claimed: Callable[[str], str] = lambda victim: victim
    """The subject the refusal record must name (verified or claimed)."""


ATTACKS = [
    Attack("missing_token", lambda v: (), UNAUTHENTICATED, lambda v: ""),
    Attack("not_a_jwt", lambda v: bearer("not-a-jwt"), UNAUTHENTICATED, lambda v: ""),
    Attack("unsigned_alg_none", lambda v: bearer(unsigned(v)), UNAUTHENTICATED),
    Attack("signature_stripped", lambda v: bearer(stripped_signature(v)), UNAUTHENTICATED),
    Attack("wrong_key", lambda v: bearer(signed(v, key="guessed-" + "k" * 40)), UNAUTHENTICATED),
    Attack("rs256_own_key", lambda v: bearer(rs256_with_own_key(v)), UNAUTHENTICATED),
    Attack("wrong_audience", lambda v: bearer(signed(v, aud="another-suite")), UNAUTHENTICATED),
    Attack("wrong_issuer", lambda v: bearer(signed(v, iss="evil-idp")), UNAUTHENTICATED),
    Attack("expired", lambda v: bearer(expired(v)), UNAUTHENTICATED),
    Attack("no_expiry", lambda v: bearer(jwt.encode(without_expiry(v), SECRET)), UNAUTHENTICATED),
    Attack("unknown_role", lambda v: bearer(signed(v, role="superuser")), UNAUTHENTICATED),
    Attack("empty_subject", lambda v: bearer(signed("")), UNAUTHENTICATED, lambda v: ""),
    Attack("basic_scheme", lambda v: (("authorization", "Basic YWxpY2U6cGFzcw=="),), UNAUTHENTICATED, lambda v: ""),
    Attack("empty_bearer", lambda v: (("authorization", "Bearer "),), UNAUTHENTICATED, lambda v: ""),
    Attack(
        "duplicated_authorization",
        lambda v: bearer(mint_token(AUTH, v)) + bearer(mint_token(AUTH, "ops", Role.OPERATOR)),
        UNAUTHENTICATED,
        lambda v: "",  # refused before either token is read
    ),
    Attack("bobs_token_for_the_victim", lambda v: bearer(mint_token(AUTH, "bob")), PERMISSION_DENIED, lambda v: "bob"),
]


# -- what each service is asked ---------------------------------------------------------


def _scope(victim: str) -> tenancy_pb2.UserScope:
    return tenancy_pb2.UserScope(user_id=victim)


@dataclass(frozen=True)
class Target:
    service: str
    rpc: str
    request: Callable[[str], Message]
    response: type[Message]


TARGETS = [
    Target(
        "loomflow.v1.AgentService",
        "Run",
        lambda v: agent_pb2.RunRequest(scope=_scope(v), options=agent_pb2.RunOptions(prompt="transfer everything")),
        agent_pb2.RunResponse,
    ),
    Target(
        "loomflow.v1.MemoryService",
        "Recall",
        lambda v: memory_pb2.RecallRequest(scope=_scope(v), query="secrets"),
        memory_pb2.RecallResponse,
    ),
    Target(
        "loomflow.v1.BudgetService",
        "GetStatus",
        lambda v: budget_pb2.GetStatusRequest(scope=_scope(v)),
        budget_pb2.GetStatusResponse,
    ),
    Target(
        "loomflow.v1.PolicyService",
        "GetPolicy",
        lambda v: policy_pb2.GetPolicyRequest(scope=_scope(v)),
        policy_pb2.GetPolicyResponse,
    ),
    Target(
        "loomflow.v1.AuditService",
        "Verify",
        lambda v: audit_pb2.VerifyRequest(scope=_scope(v)),
        audit_pb2.VerifyResponse,
    ),
]
AGENT = TARGETS[0]
CONTEXT = Target(
    "loomflow.v1.MemoryService",
    "GetContext",
    lambda v: memory_pb2.GetContextRequest(
        scope=_scope(v), recall_query="secrets", recall_limit=5, blocks_page_size=100, facts_page_size=100
    ),
    memory_pb2.GetContextResponse,
)
"""Recall, history, blocks and facts in one call: internal, like each of them."""


def call(channel: grpc.Channel, target: Target, request: Message, metadata: tuple[tuple[str, str], ...]) -> Any:
    method = channel.unary_unary(
        f"/{target.service}/{target.rpc}",
        request_serializer=type(request).SerializeToString,
        response_deserializer=target.response.FromString,
    )
    return method(request, metadata=metadata, timeout=15)


def refusal_lines(process: ServeProcess) -> list[dict[str, Any]]:
    path = process.data_dir / f"serve-{process.port}.log"
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if '"auth_refused"' in raw:
            lines.append(json.loads(raw))
    return lines


def wait_for_line(process: ServeProcess, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    for _ in range(100):
        found = [line for line in refusal_lines(process) if match(line)]
        if found:
            return found[-1]
        time.sleep(0.05)
    return None


def refused_end_user(service: str, user: str) -> Callable[[dict[str, Any]], bool]:
    def match(line: dict[str, Any]) -> bool:
        return bool(line.get("rpc", "").startswith(service) and line.get("principal") == f"user:{user}")

    return match


def audited_refusals(channel: grpc.Channel, victim: str, at_least: int = 1) -> list[audit_pb2.AuditEntry]:
    """The victim's auth_refused entries, once at least ``at_least`` are there (they are appended in the background)."""
    audit = audit_pb2_grpc.AuditServiceStub(channel)
    operator = bearer(mint_token(AUTH, "ops", Role.OPERATOR))
    entries: list[audit_pb2.AuditEntry] = []
    for _ in range(200):
        reply = audit.Query(
            audit_pb2.QueryRequest(scope=_scope(victim), action="auth_refused", limit=1000),
            metadata=operator,
            timeout=5,
        )
        entries = list(reply.entries)
        if len(entries) >= at_least:
            return entries
        time.sleep(0.05)
    return entries


# -- the tests -------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS, ids=[t.service.rsplit(".", 1)[1] for t in TARGETS])
@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_every_attack_is_refused_and_logged_on_every_service(
    secure: ServeProcess, channel: grpc.Channel, attack: Attack, target: Target
) -> None:
    victim = f"victim-{uuid.uuid4().hex[:10]}"
    with pytest.raises(grpc.RpcError) as caught:
        call(channel, target, target.request(victim), attack.metadata(victim))
    # The same code everywhere: bob's valid end-user token is refused by the internal services as an
    # end-user credential, and by the Agent as the wrong user.
    expected = attack.agent_code
    assert caught.value.code() == expected, f"{attack.name} on {target.rpc}: {caught.value.details()}"
    rpc = f"{target.service}/{target.rpc}"
    line = wait_for_line(secure, lambda found: found.get("rpc") == rpc and found.get("target_user_id") == victim)
    assert line is not None, f"no auth_refused line for {attack.name} on {rpc}"
    assert line["code"] == expected.name
    assert line["level"] == "warning"
    who = line["principal"].split(":", 1)[1] if line["principal"] != "-" else line["claimed_subject"]
    assert who == attack.claimed(victim), f"the record names {who!r}"


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_refusals_at_the_agent_land_in_the_victims_audit_chain_which_still_verifies(
    channel: grpc.Channel, attack: Attack
) -> None:
    victim = f"victim-{uuid.uuid4().hex[:10]}"
    with pytest.raises(grpc.RpcError):
        call(channel, AGENT, AGENT.request(victim), attack.metadata(victim))
    entries = audited_refusals(channel, victim)
    assert len(entries) == 1, f"{attack.name}: expected one auth_refused entry in {victim}'s chain"
    payload = dict(entries[0].payload)
    assert entries[0].actor == "security"
    assert payload["rpc"] == "loomflow.v1.AgentService/Run"
    assert payload["code"] == attack.agent_code.name
    assert payload["reason"]
    audit = audit_pb2_grpc.AuditServiceStub(channel)
    operator = bearer(mint_token(AUTH, "ops", Role.OPERATOR))
    verified = audit.Verify(audit_pb2.VerifyRequest(scope=_scope(victim)), metadata=operator, timeout=10)
    assert verified.ok, "the chain with the refusal entry verifies"


def test_end_user_tokens_are_refused_by_every_internal_service_even_for_their_own_tenant(
    secure: ServeProcess, channel: grpc.Channel
) -> None:
    alice = f"alice-{uuid.uuid4().hex[:8]}"
    for target in [*TARGETS[1:], CONTEXT]:
        with pytest.raises(grpc.RpcError) as caught:
            call(channel, target, target.request(alice), bearer(mint_token(AUTH, alice)))
        assert caught.value.code() == PERMISSION_DENIED, target.service
        line = wait_for_line(secure, refused_end_user(target.service, alice))
        assert line is not None, f"{target.service} did not log the refused end-user call"


def test_a_user_cannot_name_the_anonymous_partition_and_a_sentinel_subject_gains_nothing(
    channel: grpc.Channel,
) -> None:
    anonymous = tenancy_pb2.UserScope(anonymous=tenancy_pb2.Anonymous())
    run = agent_pb2.RunRequest(scope=anonymous, options=agent_pb2.RunOptions(prompt="hi"))
    for subject in ("alice", "__jeeves_anon_user__", "anonymous"):
        with pytest.raises(grpc.RpcError) as caught:
            call(channel, AGENT, run, bearer(mint_token(AUTH, subject)))
        assert caught.value.code() == PERMISSION_DENIED, subject


def test_an_undecodable_request_without_credentials_is_unauthenticated_first(channel: grpc.Channel) -> None:
    """Authentication comes before parsing: an anonymous caller learns nothing about the server's parser."""
    identity = lambda data: data  # noqa: E731
    method = channel.unary_unary(
        "/loomflow.v1.MemoryService/Recall", request_serializer=identity, response_deserializer=identity
    )
    with pytest.raises(grpc.RpcError) as caught:
        method(wire.scope_bytes(b"\xff\xfe"), timeout=5)
    assert caught.value.code() == UNAUTHENTICATED


def test_a_service_credential_may_not_do_what_only_an_operator_may(channel: grpc.Channel) -> None:
    audit = audit_pb2_grpc.AuditServiceStub(channel)
    service = bearer(mint_token(AUTH, "loomflow-agent", Role.SERVICE))
    with pytest.raises(grpc.RpcError) as caught:
        audit.Query(audit_pb2.QueryRequest(scope=_scope("alice"), all_tenants=True), metadata=service, timeout=5)
    assert caught.value.code() == PERMISSION_DENIED


def test_the_refusal_log_is_rate_limited_per_attacker_but_every_refusal_is_refused(
    secure: ServeProcess, channel: grpc.Channel
) -> None:
    """A flood of forged tokens cannot fill the disk or the victim's chain: the first burst is
    recorded, the rest only counted; and none of them gets through."""
    victim = f"flooded-{uuid.uuid4().hex[:8]}"
    forged = bearer(signed(victim, key="guessed-" + "k" * 40))
    started = time.monotonic()
    for _ in range(100):
        with pytest.raises(grpc.RpcError) as caught:
            call(channel, AGENT, AGENT.request(victim), forged)
        assert caught.value.code() == UNAUTHENTICATED
    # The kernel records a burst of 20, then 5 per second per (attacker, target).
    most = 20 + 5 * (time.monotonic() - started) + 1
    time.sleep(0.5)
    logged = [line for line in refusal_lines(secure) if line.get("target_user_id") == victim]
    assert 20 <= len(logged) <= most, f"{len(logged)} lines for 100 refusals (at most {most:.0f} expected)"
    assert 20 <= len(audited_refusals(channel, victim, at_least=20)) <= most


def test_no_token_or_secret_appears_in_the_security_log(secure: ServeProcess, channel: grpc.Channel) -> None:
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    token = mint_token(AUTH, "bob")
    with pytest.raises(grpc.RpcError):
        call(channel, AGENT, AGENT.request(victim), bearer(token))
    assert wait_for_line(secure, lambda found: found.get("target_user_id") == victim) is not None
    text = (secure.data_dir / f"serve-{secure.port}.log").read_text(errors="replace")
    assert SECRET not in text
    assert token not in text, "bearer tokens are credentials: the log names the subject, never the token"
