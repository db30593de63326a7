"""The benchmark runner (``python -m bench``): every benchmark registered, none editing the import path,
and the floor servers serving through the real kernel without patching a servicer."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from bench import floor
from bench.__main__ import BENCHMARKS
from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.testing.processes import ServeProcess
from loomflow.v1 import budget_pb2, budget_pb2_grpc, policy_pb2, policy_pb2_grpc, tenancy_pb2
from tests.support.repo import REPO

BENCH = REPO / "bench"
SOURCES = sorted(p for p in BENCH.rglob("*.py") if not any(part.startswith(".") for part in p.relative_to(BENCH).parts))
"""Benchmark sources: hidden folders (the race's bench/.venv-framework, caches) are not ours."""
LIBRARIES = {"harness", "topology", "chaos", "fault_load", "workload", "floor", "__init__", "__main__"}
"""Modules the benchmarks share; the race's framework lane runs in the framework's own venv."""


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def test_every_benchmark_with_a_main_is_registered() -> None:
    mains = {
        module_name(path)
        for path in SOURCES
        if re.search(r"^(async )?def main\(", path.read_text(), re.M)
        and path.stem not in LIBRARIES
        and path.name != "framework_workload.py"
    }
    assert mains == set(BENCHMARKS.values())


def test_no_benchmark_edits_the_import_path_or_silences_import_order() -> None:
    """The runner imports them as the ``bench`` package from the repository's root. (string_rules
    still puts the folder of the protos it compiles at run time on the path: generated code, not the repo.)"""
    repo_path_edit = re.compile(r"sys\.path\[|sys\.path\.(insert|append)\(.*(ROOT|REPO|__file__)")
    offenders = [
        str(path.relative_to(REPO))
        for path in SOURCES
        if repo_path_edit.search(path.read_text()) or "E402" in path.read_text()
    ]
    assert not offenders


def test_no_benchmark_patches_a_servicer() -> None:
    assignment = re.compile(r"^\s*\w+Servicer\.\w+\s*=", re.M)
    assert not [str(p.relative_to(REPO)) for p in SOURCES if assignment.search(p.read_text())]


def test_the_runner_lists_the_benchmarks_and_refuses_an_unknown_one() -> None:
    listed = subprocess.run([sys.executable, "-m", "bench"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 2
    assert all(name in listed.stdout for name in BENCHMARKS)
    unknown = subprocess.run(
        [sys.executable, "-m", "bench", "no_such_bench"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert unknown.returncode == 2
    assert "no benchmark 'no_such_bench'" in unknown.stderr


def test_the_budget_floor_answers_through_the_kernel(tmp_path: Path) -> None:
    secret = "bench-runner-test-secret-0123456789abcdef0123"
    env = {"LOOMFLOW_INSECURE": "false", "LOOMFLOW_AUTH_JWT_SECRET": secret, "LOOMFLOW_TRACING": "false"}
    serve = ServeProcess("budget", tmp_path, env=env, command=floor.command("budget"))
    with serve, grpc.insecure_channel(serve.address) as channel:
        stub = budget_pb2_grpc.BudgetServiceStub(channel)
        request = budget_pb2.ReserveRequest(
            scope=tenancy_pb2.UserScope(user_id="alice"),
            call_id="call-1",
            model="claude-sonnet-4-5",
            estimate=budget_pb2.Usage(input_tokens=800, output_tokens=200),
        )
        # The kernel's authentication runs in front of the floor, as in front of the real servicer.
        with pytest.raises(grpc.RpcError) as refused:
            stub.Reserve(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        token = mint_token(AuthSettings(jwt_secret=secret), "bench", Role.SERVICE)
        reply = stub.Reserve(request, metadata=(("authorization", f"Bearer {token}"),), timeout=10)
    assert reply.reservation_id.startswith("r1.")


def test_the_policy_floor_allows_through_the_kernel(tmp_path: Path) -> None:
    serve = ServeProcess("policy", tmp_path, env={"LOOMFLOW_INSECURE": "true"}, command=floor.command("policy"))
    with serve, grpc.insecure_channel(serve.address) as channel:
        request = policy_pb2.CheckRequest(
            scope=tenancy_pb2.UserScope(user_id="alice"), tool_name="rm", run_id="run-1", session_id="s"
        )
        reply = policy_pb2_grpc.PolicyServiceStub(channel).Check(request, timeout=10)
        # Validation runs in front of the floor: a request without a scope never reaches it.
        with pytest.raises(grpc.RpcError) as refused:
            policy_pb2_grpc.PolicyServiceStub(channel).Check(policy_pb2.CheckRequest(tool_name="rm"), timeout=10)
    assert reply.decision == policy_pb2.DECISION_ALLOW
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
