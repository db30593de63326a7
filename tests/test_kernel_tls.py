"""TLS and mTLS over real sockets: who gets refused, rotation without a restart, the Agent's channels."""

from __future__ import annotations

import secrets
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loomflow.agent import dependencies
from loomflow.client import MemoryClient, tls_credentials
from loomflow.client._transport import NO_RETRY
from loomflow.client.errors import Unavailable
from loomflow.kernel.auth import AuthSettings
from loomflow.kernel.tls import ClientTls
from loomflow.testing.certs import Authority, Pair
from loomflow.testing.processes import free_port
from loomflow.testing.suite import running_suite
from loomflow.v1 import agent_pb2, agent_pb2_grpc, memory_pb2, tenancy_pb2

REFUSED = (grpc.StatusCode.UNAVAILABLE,)


def tls_channel(address: str, ca: Path | None, client: Pair | None = None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes() if ca else None,
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )
    return grpc.aio.secure_channel(address, credentials)


async def health(channel: grpc.aio.Channel) -> grpc.StatusCode:
    """Checks health once on a fresh channel (new connection, new handshake) and closes it."""
    try:
        async with channel:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def tls_overrides(server: Pair, client_ca: Path | None = None) -> dict[str, dict[str, object]]:
    settings: dict[str, object] = {"tls_cert": str(server.cert), "tls_key": str(server.key)}
    if client_ca is not None:
        settings["tls_client_ca"] = str(client_ca)
    return {"": settings}


async def test_tls_server_answers_only_clients_that_trust_its_ca(tmp_path: Path) -> None:
    ca, other = Authority(tmp_path / "ca"), Authority(tmp_path / "other", "other-ca")
    async with running_suite(tmp_path / "data", "memory", overrides=tls_overrides(ca.server())) as suite:
        assert await health(tls_channel(suite.address, ca.ca_file)) == grpc.StatusCode.OK
        assert await health(grpc.aio.insecure_channel(suite.address)) in REFUSED, "a plaintext client was served"
        assert await health(tls_channel(suite.address, other.ca_file)) in REFUSED, "a client trusting another CA"


async def test_mtls_server_refuses_clients_without_a_certificate_of_its_ca(tmp_path: Path) -> None:
    ca, other = Authority(tmp_path / "ca"), Authority(tmp_path / "other", "other-ca")
    client = ca.issue("loomflow-agent", uris=("spiffe://loomflow/agent",), server=False)
    stranger = other.issue("stranger", server=False)
    overrides = tls_overrides(ca.server(), client_ca=ca.ca_file)
    async with running_suite(tmp_path / "data", "memory", overrides=overrides) as suite:
        assert await health(tls_channel(suite.address, ca.ca_file, client)) == grpc.StatusCode.OK
        assert await health(tls_channel(suite.address, ca.ca_file)) in REFUSED, "no client certificate was accepted"
        assert await health(tls_channel(suite.address, ca.ca_file, stranger)) in REFUSED, "another CA's client"
        assert await health(grpc.aio.insecure_channel(suite.address)) in REFUSED


async def test_rotated_certificate_files_are_served_without_a_restart(tmp_path: Path) -> None:
    old_ca, new_ca = Authority(tmp_path / "old", "old-ca"), Authority(tmp_path / "new", "new-ca")
    pair = old_ca.server()
    async with running_suite(tmp_path / "data", "memory", overrides=tls_overrides(pair)) as suite:
        assert await health(tls_channel(suite.address, old_ca.ca_file)) == grpc.StatusCode.OK
        new_ca.server(into=pair)  # what cert-manager does: rewrite the mounted files in place
        assert await health(tls_channel(suite.address, new_ca.ca_file)) == grpc.StatusCode.OK, (
            "the server still presents the old certificate after its files were rewritten"
        )
        assert await health(tls_channel(suite.address, old_ca.ca_file)) in REFUSED


async def test_health_port_stays_plaintext_for_kubernetes_probes(tmp_path: Path) -> None:
    ca = Authority(tmp_path / "ca")
    port = free_port()
    overrides = tls_overrides(ca.server(), client_ca=ca.ca_file)
    overrides[""]["health_port"] = port
    async with running_suite(tmp_path / "data", "memory", overrides=overrides):
        assert await health(grpc.aio.insecure_channel(f"127.0.0.1:{port}")) == grpc.StatusCode.OK


async def test_agent_reaches_the_other_services_over_mtls(tmp_path: Path) -> None:
    ca = Authority(tmp_path / "ca")
    agent_pair = ca.issue("loomflow-agent", server=False)
    backends = tls_overrides(ca.server(), client_ca=ca.ca_file)
    backends["audit"] = {key: secrets.token_hex(32) for key in ("hmac_key", "signing_key", "payload_key")}
    hosted = "memory,budget,policy,audit"
    async with running_suite(tmp_path / "backends", hosted, insecure=False, overrides=backends) as b:
        address = f"localhost:{b.server.port}"
        agent_overrides: dict[str, dict[str, object]] = {
            "agent": {
                **{f"{name}_address": address for name in ("memory", "budget", "policy", "audit")},
                "tls_ca": str(ca.ca_file),
                "tls_cert": str(agent_pair.cert),
                "tls_key": str(agent_pair.key),
            }
        }
        async with running_suite(tmp_path / "agent", "agent", overrides=agent_overrides) as agent:
            reply = await agent_pb2_grpc.AgentServiceStub(agent.channel).Run(
                agent_pb2.RunRequest(
                    scope=tenancy_pb2.UserScope(user_id="alice"), options=agent_pb2.RunOptions(prompt="over mtls")
                ),
                timeout=20,
            )
            assert reply.run_id, "the run did not complete over mTLS"


def test_server_with_half_a_tls_pair_refuses_to_start(tmp_path: Path) -> None:
    from loomflow import suite
    from loomflow.kernel.config import ConfigError

    pair = Authority(tmp_path / "ca").server()
    with pytest.raises(ConfigError, match="both a certificate and its private key"):
        suite.build_server(env={}, overrides={"": {"tls_cert": str(pair.cert), "insecure": True}})


async def test_python_client_speaks_mtls_with_files(tmp_path: Path) -> None:
    ca = Authority(tmp_path / "ca")
    me = ca.issue("ops-laptop", server=False)
    async with running_suite(tmp_path / "data", "memory", overrides=tls_overrides(ca.server(), ca.ca_file)) as suite:
        credentials = tls_credentials(ca.ca_file, me.cert, me.key)
        async with MemoryClient(suite.address, credentials=credentials) as memory:
            await memory.remember("over mtls", "ok", user_id="alice")
        async with MemoryClient(suite.address, credentials=tls_credentials(ca.ca_file), retry=NO_RETRY) as memory:
            with pytest.raises(Unavailable):
                await memory.remember("no client cert", "refused", user_id="alice")


async def test_agent_channels_pick_up_rotated_ca_and_client_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dependencies, "_TLS_CHECK_INTERVAL_S", 0.0)
    old_ca, new_ca = Authority(tmp_path / "old", "old-ca"), Authority(tmp_path / "new", "new-ca")
    server_pair = old_ca.server()
    trusted = tmp_path / "agent-ca.pem"
    trusted.write_bytes(old_ca.ca_file.read_bytes())
    async with running_suite(tmp_path / "data", "memory", overrides=tls_overrides(server_pair)) as suite:
        target = f"localhost:{suite.server.port}"
        deps = dependencies.Dependencies(
            dependencies.Addresses(target, target, target, target),
            dependencies.ServiceCredential(AuthSettings(), tokenless=True),
            5.0,
            tls=ClientTls(ca_file=str(trusted)),
        )
        request = memory_pb2.RecallRequest(scope=tenancy_pb2.UserScope(user_id="alice"), query="hi")
        try:
            # Both sides rotate after the Agent read its files: its first channels trust only the old CA.
            new_ca.server(into=server_pair)
            trusted.write_bytes(new_ca.ca_file.read_bytes())
            metadata = deps.metadata  # every call reads it; this read sees the new files and opens new channels
            await deps.memory.Recall(request, metadata=metadata, timeout=5)
        finally:
            await deps.close()
