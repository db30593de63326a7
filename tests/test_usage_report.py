"""The usage report: runs and tokens per tenant over a time range from the Agent's audit entries,
through AuditService/Usage and `loomflow usage` (JSON and CSV), priced with the Budget's table."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from loomflow import cli
from loomflow.client import Agent, tls_credentials
from loomflow.testing.certs import Authority
from loomflow.testing.processes import loomflow_script
from loomflow.testing.suite import RunningSuite, running_suite
from loomflow.v1 import agent_pb2, agent_pb2_grpc, audit_pb2, audit_pb2_grpc, tenancy_pb2
from tests.audit.conftest import fresh_key_texts
from tests.policy.grpc_support import SERVICE

EVERYONE = tenancy_pb2.UserScope(all_tenants=tenancy_pb2.AllTenants())


async def run(served: RunningSuite, user_id: str, prompt: str) -> agent_pb2.RunResponse:
    stub = agent_pb2_grpc.AgentServiceStub(served.channel)
    request = agent_pb2.RunRequest(
        scope=tenancy_pb2.UserScope(user_id=user_id), options=agent_pb2.RunOptions(prompt=prompt)
    )
    response: agent_pb2.RunResponse = await stub.Run(request)
    return response


async def test_usage_sums_runs_and_tokens_per_tenant_in_the_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_suite(tmp_path) as served:
        start = datetime.now(UTC) - timedelta(seconds=1)
        alice_runs = [await run(served, "alice", "hello there"), await run(served, "alice", "and again")]
        bobs = await run(served, "bob", "hi")
        end = datetime.now(UTC) + timedelta(seconds=1)

        audit = audit_pb2_grpc.AuditServiceStub(served.channel)
        request = audit_pb2.UsageRequest(scope=EVERYONE)
        request.from_time.FromDatetime(start)
        request.to_time.FromDatetime(end)
        report = await audit.Usage(request)
        by_user = {t.scope.user_id: t for t in report.tenants}
        assert set(by_user) == {"alice", "bob"}
        assert by_user["alice"].runs == 2
        assert by_user["bob"].runs == 1
        alice_output = sum(m.output_tokens for m in by_user["alice"].models)
        assert alice_output == sum(r.usage.output_tokens for r in alice_runs), "tokens differ from what the runs used"
        assert sum(m.input_tokens for m in by_user["bob"].models) == bobs.usage.input_tokens

        before = audit_pb2.UsageRequest(scope=EVERYONE)
        before.to_time.FromDatetime(start)
        assert list((await audit.Usage(before)).tenants) == [], "runs outside the range were counted"

        paged = audit_pb2.UsageRequest(scope=EVERYONE, page_size=1)
        first = await audit.Usage(paged)
        paged.page_token = first.next_page_token
        second = await audit.Usage(paged)
        assert [t.scope.user_id for t in (*first.tenants, *second.tenants)] == ["alice", "bob"]
        assert not second.next_page_token

        argv = ["usage", "--from", start.isoformat(), "--to", end.isoformat(), "--addr", served.address]
        assert await asyncio.to_thread(cli.main, [*argv, "--format", "csv"]) == 0
        table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
        assert [(r["user_id"], r["runs"]) for r in table] == [("alice", "2"), ("bob", "1")]
        assert int(table[0]["output_tokens"]) == alice_output
        assert float(table[0]["cost_usd"]) >= 0.0
        assert await asyncio.to_thread(cli.main, [*argv, "--format", "json"]) == 0
        document = json.loads(capsys.readouterr().out)
        assert [row["user_id"] for row in document] == ["alice", "bob"]
        assert document[0]["models"][0]["model"], "the per-model breakdown names the model"


async def test_the_usage_command_reaches_an_mtls_audit_with_the_operator_tls_flags(tmp_path: Path) -> None:
    """A deployment per docs/deploy.md serves Audit over mTLS with a certificate naming the service: the
    installed ``loomflow usage``, through a port-forward to 127.0.0.1, reaches it with a CA, a client
    certificate and the service's name (flags or their LOOMFLOW_CLI_TLS_* variables), and says why not
    (exit 1, UNAVAILABLE) without a certificate, without the name or over plaintext."""
    ca = Authority(tmp_path / "ca")
    laptop = ca.issue("ops-laptop", server=False)
    server = ca.issue("audit", dns=("audit", "audit.loomflow.svc"), client=False)
    overrides = {"": {"tls_cert": str(server.cert), "tls_key": str(server.key), "tls_client_ca": str(ca.ca_file)}}
    async with running_suite(tmp_path / "data", overrides=overrides) as served:
        credentials = tls_credentials(ca.ca_file, laptop.cert, laptop.key)
        named = [("grpc.ssl_target_name_override", "audit")]
        channel = grpc.aio.secure_channel(served.address, credentials, options=named)
        async with channel, Agent(channel) as agent:
            await agent.run("over mtls", user_id="alice")
        window = ["--from", (datetime.now(UTC) - timedelta(hours=1)).isoformat(), "--to", "2100-01-01"]
        command = [str(loomflow_script()), "usage", *window, "--addr", served.address]
        files = ["--tls-ca", str(ca.ca_file), "--tls-cert", str(laptop.cert), "--tls-key", str(laptop.key)]
        files += ["--tls-server-name", "audit"]

        def usage(*extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*command, *extra], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
            )

        done = await asyncio.to_thread(usage, *files)
        assert done.returncode == 0, done.stderr
        assert [row["user_id"] for row in json.loads(done.stdout)] == ["alice"]
        by_env = {"LOOMFLOW_CLI_TLS_CA": str(ca.ca_file), "LOOMFLOW_CLI_TLS_CERT": str(laptop.cert)}
        by_env |= {"LOOMFLOW_CLI_TLS_KEY": str(laptop.key), "LOOMFLOW_CLI_TLS_SERVER_NAME": "audit"}
        done = await asyncio.to_thread(usage, env=by_env)
        assert done.returncode == 0, done.stderr
        no_client_cert = ["--tls-ca", str(ca.ca_file), "--tls-server-name", "audit"]
        for refused in (no_client_cert, files[:6], []):  # no client certificate; no name; plaintext
            done = await asyncio.to_thread(usage, *refused)
            assert done.returncode == 1, (refused, done.stdout, done.stderr)
            assert "loomflow usage: UNAVAILABLE" in done.stderr, done.stderr
        done = await asyncio.to_thread(usage, "--tls-cert", str(laptop.cert))
        assert done.returncode == 2, done.stderr
        assert "--tls-key" in done.stderr, done.stderr


async def test_usage_for_every_tenant_needs_an_operator_and_a_forward_range(tmp_path: Path) -> None:
    overrides = {"audit": fresh_key_texts().settings()}
    async with running_suite(tmp_path, services="audit", insecure=False, overrides=overrides) as served:
        audit = audit_pb2_grpc.AuditServiceStub(served.channel)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await audit.Usage(audit_pb2.UsageRequest(scope=EVERYONE), metadata=SERVICE)
        assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
        backwards = audit_pb2.UsageRequest(scope=tenancy_pb2.UserScope(user_id="alice"))
        backwards.from_time.FromDatetime(datetime(2030, 1, 1, tzinfo=UTC))
        backwards.to_time.FromDatetime(datetime(2029, 1, 1, tzinfo=UTC))
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await audit.Usage(backwards, metadata=SERVICE)
        assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
