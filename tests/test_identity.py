"""Public-key identity: JWKS files and URLs, OIDC discovery, claim names, mTLS service principals,
and the reason for all of it: a compromised internal service cannot mint an operator token."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.kernel.transport.mux_client import MuxChannel, MuxSettings
from loomflow.kernel.transport.mux_server import MuxServicer
from loomflow.testing.certs import Authority
from loomflow.testing.suite import running_suite
from loomflow.v1 import agent_pb2, agent_pb2_grpc, audit_pb2, audit_pb2_grpc, memory_pb2, memory_pb2_grpc, tenancy_pb2

AUDIENCE = "loomflow"


class IdentityProvider:
    """Holds the private keys (only the test does); publishes the public ones as a JWKS."""

    def __init__(self, issuer: str = "https://idp.example") -> None:
        self.issuer = issuer
        self.keys: dict[str, Any] = {}
        self.add_key("k1", rsa.generate_private_key(public_exponent=65537, key_size=2048))
        self.add_key("k2", ec.generate_private_key(ec.SECP256R1()))

    def add_key(self, kid: str, key: Any) -> None:
        self.keys[kid] = key

    def jwks(self) -> dict[str, Any]:
        published = []
        for kid, key in self.keys.items():
            algorithm = (
                jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
            )
            jwk = json.loads(algorithm.to_jwk(key.public_key()))
            published.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": published}

    def write_jwks(self, path: Path) -> Path:
        path.write_text(json.dumps(self.jwks()))
        return path

    def token(self, subject: str, role: str | None = None, kid: str = "k1", **claims: Any) -> str:
        key = self.keys[kid]
        now = int(time.time())
        body: dict[str, Any] = {"sub": subject, "iss": self.issuer, "aud": AUDIENCE, "iat": now, "exp": now + 300}
        if role is not None:
            body["role"] = role
        body.update(claims)
        algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, str], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A JWT assembled by hand, as an attacker would (PyJWT refuses to make these)."""
    signing_input = f"{b64(json.dumps({**header, 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


async def verify_all(channel: grpc.aio.Channel, token: str | None) -> grpc.StatusCode:
    """An operator-only call: Audit Verify across every tenant."""
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    request = audit_pb2.VerifyRequest(scope=tenancy_pb2.UserScope(user_id="alice"), all_tenants=True)
    try:
        await audit_pb2_grpc.AuditServiceStub(channel).Verify(request, metadata=metadata, timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def recall(channel: grpc.aio.Channel, token: str | None) -> grpc.StatusCode:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    request = memory_pb2.RecallRequest(scope=tenancy_pb2.UserScope(user_id="alice"), query="hi")
    try:
        await memory_pb2_grpc.MemoryServiceStub(channel).Recall(request, metadata=metadata, timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def audit_keys() -> dict[str, str]:
    return {key: secrets.token_hex(32) for key in ("hmac_key", "signing_key", "payload_key")}


def public_only(auth: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Secure mode with no secret that can sign: the JWT secret is explicitly empty."""
    return {"": {"insecure": False}, "auth": {"jwt_secret": "", **auth}, "audit": audit_keys()}


async def test_tokens_of_every_published_key_verify_and_a_new_key_needs_no_restart(tmp_path: Path) -> None:
    idp = IdentityProvider()
    jwks = idp.write_jwks(tmp_path / "jwks.json")
    overrides = public_only({"jwks_file": str(jwks), "jwt_issuer": idp.issuer})
    async with running_suite(tmp_path / "data", "memory,audit", insecure=False, overrides=overrides) as suite:
        assert await recall(suite.channel, idp.token("agent", "service", kid="k1")) == grpc.StatusCode.OK
        assert await recall(suite.channel, idp.token("agent", "service", kid="k2")) == grpc.StatusCode.OK
        idp.add_key("k3", ec.generate_private_key(ec.SECP256R1()))
        unknown = idp.token("agent", "service", kid="k3")
        assert await recall(suite.channel, unknown) == grpc.StatusCode.UNAUTHENTICATED
        idp.write_jwks(jwks)  # the IdP publishes its new key
        assert await recall(suite.channel, idp.token("agent", "service", kid="k3")) == grpc.StatusCode.OK


async def test_compromised_internal_service_cannot_mint_an_operator_token(tmp_path: Path) -> None:
    """What a compromised Memory pod holds: its own service token and the public JWKS. None of it signs."""
    idp = IdentityProvider()
    jwks = idp.write_jwks(tmp_path / "jwks.json")
    service_token = idp.token("memory", "service")
    overrides = public_only({"jwks_file": str(jwks), "jwt_issuer": idp.issuer, "service_token": service_token})
    async with running_suite(tmp_path / "data", "memory,audit", insecure=False, overrides=overrides) as suite:
        assert await verify_all(suite.channel, idp.token("ops", "operator")) == grpc.StatusCode.OK, "control"
        assert await verify_all(suite.channel, service_token) == grpc.StatusCode.PERMISSION_DENIED

        stolen = AuthSettings(jwks_file=str(jwks), jwt_issuer=idp.issuer, service_token=service_token)
        with pytest.raises(ValueError, match="no signing key"):
            mint_token(stolen, "attacker", Role.OPERATOR)  # `loomflow token` in the pod: nothing to sign with

        now = int(time.time())
        claims = {"sub": "attacker", "role": "operator", "iss": idp.issuer, "aud": AUDIENCE, "exp": now + 300}
        public_pem = (
            idp.keys["k1"]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        header, _, signature = service_token.split(".")
        edited = {**jwt.decode(service_token, options={"verify_signature": False}), "role": "operator"}
        own_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forgeries = {
            "HS256 keyed with the published public key": forge(
                {"alg": "HS256", "kid": "k1"}, claims, lambda data: hmac.new(public_pem, data, hashlib.sha256).digest()
            ),
            "its own key under a published kid": jwt.encode(claims, own_key, algorithm="RS256", headers={"kid": "k1"}),
            "the service token with its role edited": f"{header}.{b64(json.dumps(edited).encode())}.{signature}",
            "an unsigned token": forge({"alg": "none", "kid": "k1"}, claims, lambda _: b""),
        }
        for what, forged in forgeries.items():
            code = await verify_all(suite.channel, forged)
            assert code == grpc.StatusCode.UNAUTHENTICATED, f"{what}: answered {code.name}"


@contextlib.contextmanager
def oidc_provider(idp: IdentityProvider) -> Iterator[str]:
    """A tiny OIDC issuer on loopback: discovery document and JWKS."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's naming
            requests.append(self.path)
            if self.path == "/.well-known/openid-configuration":
                body = {"issuer": idp.issuer, "jwks_uri": idp.issuer + "/keys"}
            elif self.path == "/keys":
                body = idp.jwks()
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    idp.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield idp.issuer
    finally:
        server.shutdown()
        server.server_close()


async def test_oidc_discovery_finds_the_keys_and_pins_the_issuer(tmp_path: Path) -> None:
    idp = IdentityProvider()
    with oidc_provider(idp) as issuer:
        overrides = public_only({"oidc_issuer": issuer})
        async with running_suite(tmp_path / "data", "memory,audit", insecure=False, overrides=overrides) as suite:
            assert await recall(suite.channel, idp.token("agent", "service", kid="k2")) == grpc.StatusCode.OK
            idp.issuer = "https://someone-else.example"
            foreign = idp.token("agent", "service")
            assert await recall(suite.channel, foreign) == grpc.StatusCode.UNAUTHENTICATED


async def test_claim_names_map_an_existing_providers_tokens(tmp_path: Path) -> None:
    idp = IdentityProvider()
    jwks = idp.write_jwks(tmp_path / "jwks.json")
    auth = {"jwks_file": str(jwks), "jwt_issuer": idp.issuer, "user_claim": "uid", "role_claim": "access.roles"}
    async with running_suite(tmp_path / "data", "memory,audit", insecure=False, overrides=public_only(auth)) as suite:
        operator = idp.token("opaque-id", uid="ops", access={"roles": ["reader", "operator"]})
        assert await verify_all(suite.channel, operator) == grpc.StatusCode.OK
        service = idp.token("opaque-id", uid="agent", access={"roles": ["service"]})
        assert await verify_all(suite.channel, service) == grpc.StatusCode.PERMISSION_DENIED
        assert await recall(suite.channel, idp.token("opaque-id", access={"roles": ["service"]})) == (
            grpc.StatusCode.UNAUTHENTICATED
        ), "a token without the user-id claim was accepted"


@pytest.mark.parametrize("transport", ["grpc", "inprocess"])  # unary calls, or the default: multiplexed streams
async def test_mtls_identity_is_a_service_principal_and_the_agent_needs_no_token(
    tmp_path: Path, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Backends trust the Agent's certificate (SAN URI) as a service; nobody holds a signing key."""
    streams: list[str] = []  # the peers that opened a multiplexed stream
    multiplex = MuxServicer.Multiplex

    async def counted(self: MuxServicer, requests: Any, context: Any) -> None:
        streams.append(context.peer())
        await multiplex(self, requests, context)

    monkeypatch.setattr(MuxServicer, "Multiplex", counted)
    idp = IdentityProvider()
    jwks = idp.write_jwks(tmp_path / "jwks.json")
    ca = Authority(tmp_path / "ca")
    agent_pair = ca.issue("loomflow-agent", uris=("spiffe://loomflow/agent",), server=False)
    other_pair = ca.issue("stranger", uris=("spiffe://loomflow/stranger",), server=False)
    server_pair = ca.server()
    backends = public_only(
        {"jwks_file": str(jwks), "jwt_issuer": idp.issuer, "service_identities": "spiffe://loomflow/agent"}
    )
    backends[""].update(tls_cert=str(server_pair.cert), tls_key=str(server_pair.key), tls_client_ca=str(ca.ca_file))
    async with running_suite(tmp_path / "b", "memory,budget,policy,audit", insecure=False, overrides=backends) as b:
        address = f"localhost:{b.server.port}"
        for pair, expected in ((agent_pair, grpc.StatusCode.OK), (other_pair, grpc.StatusCode.UNAUTHENTICATED)):
            credentials = grpc.ssl_channel_credentials(
                ca.ca_file.read_bytes(), pair.key.read_bytes(), pair.cert.read_bytes()
            )
            async with grpc.aio.secure_channel(address, credentials) as channel:
                assert await recall(channel, None) == expected, f"{pair.cert.name}: no token, certificate only"
                muxed = MuxChannel(channel, MuxSettings(streams=1))  # authenticated by the certificate at open
                assert await recall(muxed.as_channel(), None) == expected, f"{pair.cert.name} over a stream"
                await muxed.close()
                if expected is grpc.StatusCode.OK:
                    assert await verify_all(channel, None) == grpc.StatusCode.PERMISSION_DENIED
        agent = public_only({"jwks_file": str(jwks), "jwt_issuer": idp.issuer})
        agent["agent"] = {
            **{f"{name}_address": address for name in ("memory", "budget", "policy", "audit")},
            "tls_ca": str(ca.ca_file),
            "tls_cert": str(agent_pair.cert),
            "tls_key": str(agent_pair.key),
            "transport": transport,
        }
        checked = len(streams)
        async with running_suite(tmp_path / "a", "agent", insecure=False, overrides=agent) as running:
            reply = await agent_pb2_grpc.AgentServiceStub(running.channel).Run(
                agent_pb2.RunRequest(
                    scope=tenancy_pb2.UserScope(user_id="alice"), options=agent_pb2.RunOptions(prompt="hi")
                ),
                metadata=(("authorization", f"Bearer {idp.token('alice')}"),),
                timeout=20,
            )
            assert reply.run_id, "the run did not complete with certificate-only service identity"
        agents = streams[checked:]
        assert bool(agents) is (transport != "grpc"), f"the Agent's calls went over {transport}: {agents}"
