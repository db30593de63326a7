"""The usage report: runs and tokens per tenant over a time range from the Agent's audit entries,
through AuditService/Usage and `loomflow usage` (JSON and CSV), priced with the Budget's table."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from loomflow import cli
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
