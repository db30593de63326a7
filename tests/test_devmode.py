"""Insecure development mode and the tools work together, as `make serve` and the README promise.

`loomflow serve --insecure` keeps a development token secret in its data folder; `loomflow token`
run from the same folder signs with it, so its tokens are accepted and bound to their subject as in
production; a call without a header acts as an operator; an empty bearer token is refused with a
message that says so; the printed offline verify command passes on the server's own audit log.
Everything runs through the installed `.venv/bin/loomflow`, as real processes.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from loomflow.testing.processes import free_port, loomflow_script
from loomflow.v1 import audit_pb2, audit_pb2_grpc, budget_pb2, budget_pb2_grpc, tenancy_pb2

pytestmark = pytest.mark.slow  # a `loomflow serve` process


@dataclass
class DevServer:
    folder: Path
    address: str
    banner: str
    env: dict[str, str]

    def loomflow(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(loomflow_script()), *args], cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=60
        )


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    folder = tmp_path_factory.mktemp("devmode")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOMFLOW_")}
    port = free_port()
    log = (folder / "serve.log").open("w")
    process = subprocess.Popen(
        [str(loomflow_script()), "serve", "--insecure", "--port", str(port), "--metrics-port", "0"],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while "insecure development mode" not in (folder / "serve.log").read_text():
            assert process.poll() is None, (folder / "serve.log").read_text()
            assert time.monotonic() < deadline, (folder / "serve.log").read_text()
            time.sleep(0.2)
        yield DevServer(folder, f"127.0.0.1:{port}", (folder / "serve.log").read_text(), env)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def call_get_status(server: DevServer, user_id: str, authorization: str | None) -> budget_pb2.GetStatusResponse:
    metadata = (("authorization", authorization),) if authorization is not None else None
    with grpc.insecure_channel(server.address) as channel:
        stub = budget_pb2_grpc.BudgetServiceStub(channel)
        request = budget_pb2.GetStatusRequest(scope=tenancy_pb2.UserScope(user_id=user_id))
        response: budget_pb2.GetStatusResponse = stub.GetStatus(request, metadata=metadata, timeout=10)
        return response


def test_the_token_command_signs_with_the_kept_development_secret(dev_server: DevServer) -> None:
    minted = dev_server.loomflow("token", "ops-cli", "--role", "service")
    assert minted.returncode == 0, minted.stderr
    assert (dev_server.folder / ".loomflow" / "dev-jwt-secret").exists()
    call_get_status(dev_server, "alice", f"Bearer {minted.stdout.strip()}")  # accepted


def test_a_user_token_is_bound_to_its_subject_in_development_mode_too(dev_server: DevServer) -> None:
    alice = dev_server.loomflow("token", "alice").stdout.strip()
    with pytest.raises(grpc.RpcError) as refused:
        call_get_status(dev_server, "alice", f"Bearer {alice}")  # an end user on an internal service
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_no_header_acts_as_an_operator_and_an_empty_token_says_so(dev_server: DevServer) -> None:
    call_get_status(dev_server, "alice", None)
    with pytest.raises(grpc.RpcError) as refused:
        call_get_status(dev_server, "alice", "Bearer ")
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "the bearer token is empty" in (refused.value.details() or "")


def test_a_token_signed_elsewhere_is_refused_with_a_hint(dev_server: DevServer) -> None:
    other = subprocess.run(
        [str(loomflow_script()), "token", "alice", "--role", "service"],
        env={**dev_server.env, "LOOMFLOW_AUTH_JWT_SECRET": "f" * 8 + "0123456789abcdef" * 3},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with pytest.raises(grpc.RpcError) as refused:
        call_get_status(dev_server, "alice", f"Bearer {other}")
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "dev-jwt-secret" in (refused.value.details() or "")


def test_the_printed_verify_command_passes_on_the_servers_own_log(dev_server: DevServer) -> None:
    with grpc.insecure_channel(dev_server.address) as channel:
        audit = audit_pb2_grpc.AuditServiceStub(channel)
        scope = tenancy_pb2.UserScope(user_id="alice")
        audit.Append(audit_pb2.AppendRequest(scope=scope, actor="test", action="note"), timeout=10)
        audit.GetCheckpoint(audit_pb2.GetCheckpointRequest(scope=scope, create=True), timeout=10)
    command = next(line.strip() for line in dev_server.banner.splitlines() if " audit verify " in line)
    assert "--public-key .loomflow/audit/public-key.pem" in command
    verified = subprocess.run(
        shlex.split(command), cwd=dev_server.folder, env=dev_server.env, capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "signature valid under the trusted public key" in verified.stdout


def test_without_a_key_or_a_development_secret_the_token_command_says_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOMFLOW_")}
    done = subprocess.run(
        [str(loomflow_script()), "token", "alice"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "LOOMFLOW_AUTH_JWT_SECRET" in done.stderr
    assert "make serve" in done.stderr
    assert "Traceback" not in done.stderr
