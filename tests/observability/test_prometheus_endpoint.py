"""A real `loomflow serve` process, a multi-tenant run, then its Prometheus endpoint and its logs.

Production shape on purpose: the process installs its MeterProvider once, so
the guard (``--metrics-max-tenants 3``) and the HTTP endpoint are the ones a
Prometheus server would scrape.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest

from loomflow.kernel.telemetry import OTHER_TENANTS
from loomflow.kernel.tenancy import ANONYMOUS_LABEL, ANONYMOUS_SENTINEL
from loomflow.testing.processes import ServeProcess, free_port
from loomflow.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    budget_pb2,
    budget_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    tenancy_pb2,
)
from tests.observability import metric_names
from tests.observability.prometheus import Sample, label_values, scrape, select, total

MAX_TENANTS = 4
MEMORY = "loomflow.v1.MemoryService"
CANARY = f"CANARY-{uuid.uuid4().hex}"
"""Planted in prompts, inputs and metadata: it must never reach a log line or a label."""

# Remember calls per tenant, in the order they first appear. With dana's agent
# run after the first three, four tenants keep their label; the rest share __other__.
REMEMBERS = {"alice": 3, "bob": 2, None: 1}
AGENT_TENANT = "dana"
OVERFLOW = ("carol", "dave", "erin")
SCRIPT = [
    {
        "turns": [
            {"text": "computing", "tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]},
            {"text": "it is 42"},
        ]
    }
]


@dataclass
class ObservedRun:
    samples: list[Sample]
    log_lines: list[dict[str, Any]]
    raw_log: str
    codes: dict[str, list[grpc.StatusCode]]
    agent_run: agent_pb2.RunResponse


def _scope(user: str | None) -> tenancy_pb2.UserScope:
    if user is None:
        return tenancy_pb2.UserScope(anonymous=tenancy_pb2.Anonymous())
    return tenancy_pb2.UserScope(user_id=user)


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def _remember(memory: memory_pb2_grpc.MemoryServiceStub, user: str | None, i: int) -> grpc.StatusCode:
    request = memory_pb2.RememberRequest(
        scope=_scope(user),
        session_id=f"session-{user}",
        run_id=f"run-{user}-{i}",
        input=f"my password is {CANARY}",
        output="noted",
        metadata={"api_key": CANARY},
    )
    return _code(partial(memory.Remember, request, timeout=10))


def _workload(address: str) -> tuple[dict[str, list[grpc.StatusCode]], agent_pb2.RunResponse]:
    codes: dict[str, list[grpc.StatusCode]] = {}
    with grpc.insecure_channel(address) as channel:
        memory = memory_pb2_grpc.MemoryServiceStub(channel)
        for user, count in REMEMBERS.items():
            codes[f"remember:{user}"] = [_remember(memory, user, i) for i in range(count)]
        options = agent_pb2.RunOptions(prompt=f"compute 6*7; my password is {CANARY}", session_id="conv-dana")
        run = agent_pb2.RunRequest(scope=_scope(AGENT_TENANT), options=options)
        agent_run = agent_pb2_grpc.AgentServiceStub(channel).Run(run, timeout=30)
        for user in OVERFLOW:
            codes[f"remember:{user}"] = [_remember(memory, user, 0)]
        recall = memory_pb2.RecallRequest(scope=_scope("alice"), query=f"password {CANARY}", session_id="session-alice")
        codes["recall:alice"] = [_code(lambda: memory.Recall(recall, timeout=10))]
        # The sentinel is not a user id: refused, and never shown as a label.
        sentinel = memory_pb2.RememberRequest(scope=tenancy_pb2.UserScope(user_id=ANONYMOUS_SENTINEL), input="x")
        codes["remember:sentinel"] = [_code(lambda: memory.Remember(sentinel, timeout=10))]
        codes.update(_budget_workload(budget_pb2_grpc.BudgetServiceStub(channel)))
        approval = policy_pb2.RequestApprovalRequest(
            scope=_scope("alice"), tool_name="delete_everything", session_id="session-alice", timeout_ms=600_000
        )
        codes["request_approval:alice"] = [
            _code(partial(policy_pb2_grpc.PolicyServiceStub(channel).RequestApproval, approval, timeout=10))
        ]
    return codes, agent_run


PRICED_MODEL = "claude-sonnet-4"  # USD 3 per million input tokens, 15 per million output tokens
ALICE_COST_USD = 1000 * 3 / 1e6 + 500 * 15 / 1e6


def _budget_workload(budget: budget_pb2_grpc.BudgetServiceStub) -> dict[str, list[grpc.StatusCode]]:
    """alice spends (1000 in, 500 out); bob is refused by a 100-token limit."""
    codes: dict[str, list[grpc.StatusCode]] = {}
    usage = budget_pb2.Usage(input_tokens=1000, output_tokens=500)
    reserve = budget_pb2.ReserveRequest(scope=_scope("alice"), call_id="c-1", model=PRICED_MODEL, estimate=usage)
    held: list[str] = []
    codes["reserve:alice"] = [_code(lambda: held.append(budget.Reserve(reserve, timeout=10).reservation_id))]
    if held:
        commit = budget_pb2.CommitRequest(scope=_scope("alice"), reservation_id=held[0], actual=usage)
        codes["commit:alice"] = [_code(partial(budget.Commit, commit, timeout=10))]
    limit = budget_pb2.Limit(dimension=budget_pb2.DIMENSION_TOTAL_TOKENS, window=budget_pb2.WINDOW_NONE, max=100)
    set_limits = budget_pb2.SetLimitsRequest(scope=_scope("bob"), target=budget_pb2.LIMIT_TARGET_USER, limits=[limit])
    codes["set_limits:bob"] = [_code(partial(budget.SetLimits, set_limits, timeout=10))]
    refused = budget_pb2.ReserveRequest(scope=_scope("bob"), call_id="c-2", model=PRICED_MODEL, estimate=usage)
    codes["reserve:bob"] = [_code(partial(budget.Reserve, refused, timeout=10))]
    return codes


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> ObservedRun:
    data_dir: Path = tmp_path_factory.mktemp("observed")
    script = data_dir / "script.json"
    script.write_text(json.dumps(SCRIPT))
    metrics_port = free_port()
    serve = ServeProcess(
        services="memory,budget,policy,audit,agent",
        data_dir=data_dir,
        env={
            "LOOMFLOW_INSECURE": "true",
            "LOOMFLOW_METRICS_PORT": str(metrics_port),
            "LOOMFLOW_METRICS_MAX_TENANTS": str(MAX_TENANTS),
            "LOOMFLOW_LOG_LEVEL": "info",
            "LOOMFLOW_LOG_FORMAT": "json",
            "LOOMFLOW_AGENT_MODEL": "scripted",
            "LOOMFLOW_AGENT_SCRIPT_FILE": str(script),
        },
    )
    with serve:
        codes, agent_run = _workload(serve.address)
        samples = scrape(metrics_port)
    raw = (data_dir / f"serve-{serve.port}.log").read_text()
    lines = [json.loads(line) for line in raw.splitlines() if line.startswith("{")]
    return ObservedRun(samples, lines, raw, codes, agent_run)


def failed(samples: list[Sample], **labels: str) -> float:
    """Errors are requests whose code is not OK (there is no separate errors counter to keep in step)."""
    found = select(samples, "loomflow_rpc_requests_total", **labels)
    return sum(s.value for s in found if s.labels.get("code") != "OK")


def test_requests_are_counted_per_tenant_under_the_service_and_user_id_labels(observed: ObservedRun) -> None:
    s = observed.samples
    # Per tenant by service (alice: 3 Remembers and 1 Recall; bob: 2 Remembers), per method without tenant.
    assert total(s, "loomflow_rpc_requests_total", service=MEMORY, user_id="alice") == 3 + 1
    assert total(s, "loomflow_rpc_requests_total", service=MEMORY, user_id="bob") == 2
    assert total(s, "loomflow_rpc_duration_seconds_count", service=MEMORY) == total(
        s, "loomflow_rpc_requests_total", service=MEMORY
    )
    # alice's Recall; the agent run read Memory once, with GetContext (recall, history, blocks, facts)
    assert total(s, "loomflow_rpc_duration_seconds_count", service=MEMORY, method="Recall") == 1
    assert total(s, "loomflow_rpc_duration_seconds_count", service=MEMORY, method="GetContext") == 1


def test_the_anonymous_partition_is_labelled_anonymous_never_the_sentinel(observed: ObservedRun) -> None:
    assert total(observed.samples, "loomflow_rpc_requests_total", service=MEMORY, user_id=ANONYMOUS_LABEL) == 1
    leaked = [s for s in observed.samples if any(ANONYMOUS_SENTINEL in v for v in s.labels.values())]
    assert not leaked, f"the sentinel appears as a label value: {leaked[:3]}"


def test_tenants_beyond_the_guard_are_reported_as_other(observed: ObservedRun) -> None:
    users = label_values(observed.samples, "user_id")
    assert users == {"alice", "bob", ANONYMOUS_LABEL, AGENT_TENANT, OTHER_TENANTS}, f"user_id values: {sorted(users)}"
    assert not users & set(OVERFLOW)
    # carol, dave and erin, plus the refused sentinel request (which has no tenant).
    assert total(observed.samples, "loomflow_rpc_requests_total", service=MEMORY, user_id=OTHER_TENANTS) == (
        len(OVERFLOW) + 1
    )


def test_errors_are_counted_by_status_code(observed: ObservedRun) -> None:
    assert observed.codes["remember:sentinel"] == [grpc.StatusCode.INVALID_ARGUMENT]
    refused = total(observed.samples, "loomflow_rpc_requests_total", service=MEMORY, code="INVALID_ARGUMENT")
    assert refused == 1
    calls = observed.codes["remember:alice"] + observed.codes["recall:alice"]
    ok_alice = calls.count(grpc.StatusCode.OK)
    rpc = {"service": MEMORY, "user_id": "alice"}
    assert total(observed.samples, "loomflow_rpc_requests_total", **rpc, code="OK") == ok_alice
    assert failed(observed.samples, **rpc) == len(calls) - ok_alice


def _rpc_lines(observed: ObservedRun) -> list[dict[str, Any]]:
    return [line for line in observed.log_lines if line.get("logger") == "loomflow.rpc" and line.get("msg") == "rpc"]


def test_one_info_log_line_per_request_with_the_tenant_rpc_and_ids(observed: ObservedRun) -> None:
    lines = _rpc_lines(observed)
    calls = sum(len(codes) for codes in observed.codes.values())
    direct = [line for line in lines if line.get("user_id") != AGENT_TENANT]
    assert len(direct) == calls, f"{len(direct)} rpc log lines for {calls} calls"
    remembers = [line for line in lines if line.get("rpc") == f"{MEMORY}/Remember" and line.get("user_id") == "alice"]
    assert len(remembers) == 3
    for line in remembers:
        assert line["level"] == "info"
        assert line["session_id"] == "session-alice"
        assert line["run_id"].startswith("run-alice-")
        assert len(line["trace_id"]) == 32, "tracing is on by default, so every line carries its trace id"
        assert line["code"] in {c.name for c in observed.codes["remember:alice"]}
        assert isinstance(line["duration_ms"], float | int)
    anonymous = [line for line in lines if line.get("user_id") == ANONYMOUS_LABEL]
    assert len(anonymous) == 1


def test_logs_carry_no_payloads_and_never_the_sentinel(observed: ObservedRun) -> None:
    assert CANARY not in observed.raw_log, "a request payload reached the logs"
    assert ANONYMOUS_SENTINEL not in observed.raw_log


def test_budget_charges_and_refusals_are_counted_per_tenant(observed: ObservedRun) -> None:
    s = observed.samples
    assert observed.codes["commit:alice"] == [grpc.StatusCode.OK]
    assert total(s, "loomflow_budget_tokens_charged_total", user_id="alice", kind="input") == 1000
    assert total(s, "loomflow_budget_tokens_charged_total", user_id="alice", kind="output") == 500
    assert total(s, "loomflow_budget_cost_charged_usd_total", user_id="alice") == pytest.approx(ALICE_COST_USD)
    assert total(s, "loomflow_budget_reservations_total", user_id="alice", outcome="granted") == 1
    assert observed.codes["reserve:bob"] == [grpc.StatusCode.RESOURCE_EXHAUSTED]
    (refusal,) = select(s, "loomflow_budget_refusals_total", user_id="bob")
    assert refusal.value == 1
    assert "total_tokens" in refusal.labels["limit"]
    assert total(s, "loomflow_budget_cost_charged_usd_total", user_id="bob") == 0


def test_an_agent_run_is_counted_in_the_agent_policy_audit_and_budget_metrics(observed: ObservedRun) -> None:
    s, run = observed.samples, observed.agent_run
    assert run.turns == 2
    assert len(run.tool_calls) == 1
    user = {"user_id": AGENT_TENANT}
    assert total(s, "loomflow_agent_runs_total", **user, outcome="completed") == 1
    assert total(s, "loomflow_agent_turns_total", **user) == run.turns
    assert total(s, "loomflow_agent_tool_calls_total", **user, outcome="executed") == 1
    assert total(s, "loomflow_agent_model_duration_seconds_count", model="scripted") >= run.turns
    assert total(s, "loomflow_policy_decisions_total", **user, outcome="allow") == 1
    assert total(s, "loomflow_audit_appends_total", **user) >= run.turns
    assert total(s, "loomflow_budget_tokens_charged_total", **user, kind="input") == run.usage.input_tokens
    assert total(s, "loomflow_budget_tokens_charged_total", **user, kind="output") == run.usage.output_tokens
    assert total(s, "loomflow_memory_episodes_stored_total", **user) == 1
    assert failed(s, **user) == 0


def test_every_service_logs_the_agent_run_under_one_trace_with_its_ids(observed: ObservedRun) -> None:
    run_id = observed.agent_run.run_id
    lines = [line for line in _rpc_lines(observed) if line.get("run_id") == run_id]
    services = {line["rpc"].split("/")[0] for line in lines}
    assert services == {
        "loomflow.v1.AgentService",
        "loomflow.v1.MemoryService",
        "loomflow.v1.BudgetService",
        "loomflow.v1.PolicyService",
        "loomflow.v1.AuditService",
    }
    assert len({line["trace_id"] for line in lines}) == 1, "one run, one trace id in every service's lines"
    assert {line["user_id"] for line in lines} == {AGENT_TENANT}
    assert {line["session_id"] for line in lines} == {"conv-dana"}
    dana = [line for line in _rpc_lines(observed) if line.get("user_id") == AGENT_TENANT]
    assert len(dana) == len(lines), "a line of dana's run lacks its run_id"


def test_a_pending_approval_is_shown_per_tenant(observed: ObservedRun) -> None:
    assert observed.codes["request_approval:alice"] == [grpc.StatusCode.OK]
    assert total(observed.samples, "loomflow_policy_pending_approvals", user_id="alice") == 1


def test_every_loomflow_counter_has_a_user_id_and_no_histogram_has_one(observed: ObservedRun) -> None:
    histograms = {f"{h}_{part}" for h in metric_names.HISTOGRAMS for part in ("bucket", "count", "sum")}
    loomflow = [s for s in observed.samples if s.name.startswith("loomflow_")]
    unlabelled = sorted({s.name for s in loomflow if s.name not in histograms and "user_id" not in s.labels})
    assert not unlabelled, f"counters without user_id: {unlabelled}"
    per_tenant = sorted({s.name for s in loomflow if s.name in histograms and "user_id" in s.labels})
    assert not per_tenant, f"histograms with user_id: {per_tenant}"
