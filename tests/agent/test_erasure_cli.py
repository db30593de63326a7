"""``loomflow forget-user`` and ``loomflow export-user`` against a real `loomflow serve` process."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from pathlib import Path

import pytest

from loomflow import cli
from loomflow.kernel.auth import Role
from loomflow.testing.certs import Authority
from loomflow.testing.processes import ServeProcess
from loomflow.testing.suite import TEST_JWT_SECRET, running_suite
from tests.agent.conftest import audit_keys, token


def test_forget_user_and_export_user_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"LOOMFLOW_INSECURE": "false", "LOOMFLOW_AUTH_JWT_SECRET": TEST_JWT_SECRET, "LOOMFLOW_TRACING": "false"}
    env |= {f"LOOMFLOW_AUDIT_{k.upper()}": v for k, v in audit_keys().items()}
    served = ServeProcess("memory,budget,policy,audit,agent", tmp_path / "suite", env=env)
    try:
        served.start(timeout=120)  # five services starting on a loaded two-core machine
        connect = ["--addr", served.address]
        archive = tmp_path / "alice.tar.gz"
        assert cli.main(["export-user", "alice", *connect, "--token", token("alice"), "-o", str(archive)]) == 0
        with tarfile.open(fileobj=io.BytesIO(archive.read_bytes()), mode="r:gz") as tar:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest["format"] == "loomflow-export/1"
        assert manifest["user_id"] == "alice"

        operator = ["--token", token("ops", Role.OPERATOR)]
        capsys.readouterr()
        assert cli.main(["forget-user", "alice", *connect, *operator, "--request-id", "t-1"]) == 0
        erasure = json.loads(capsys.readouterr().out)
        assert erasure["state"] == "ERASURE_STATE_DONE"
        assert [s["service"] for s in erasure["steps"]] == ["agent", "memory", "budget", "policy", "audit"]
        assert cli.main(["forget-user", "alice", *connect, *operator, "--erasure-id", erasure["erasure_id"]]) == 0
        assert json.loads(capsys.readouterr().out)["erasure_id"] == erasure["erasure_id"]

        # A user may not erase, and the refusal is one line, not a traceback.
        assert cli.main(["forget-user", "alice", *connect, "--token", token("alice")]) == 1
        assert "operator" in capsys.readouterr().err
    finally:
        served.stop()


async def test_export_user_reaches_an_agent_over_tls_by_its_service_name(tmp_path: Path) -> None:
    """The operator commands share `loomflow usage`'s connection flags: a CA to trust and the name the
    Agent's certificate carries (a port-forward reaches it as 127.0.0.1)."""
    ca = Authority(tmp_path / "ca")
    server = ca.issue("agent", dns=("agent",), client=False)
    overrides = {"": {"tls_cert": str(server.cert), "tls_key": str(server.key)}}
    async with running_suite(tmp_path / "data", overrides=overrides) as served:
        archive = tmp_path / "alice.tar.gz"
        command = ["export-user", "alice", "--addr", served.address, "--tls-ca", str(ca.ca_file), "-o", str(archive)]
        assert await asyncio.to_thread(cli.main, [*command, "--tls-server-name", "agent"]) == 0
        with tarfile.open(fileobj=io.BytesIO(archive.read_bytes()), mode="r:gz") as tar:
            assert json.load(tar.extractfile("manifest.json"))["user_id"] == "alice"  # type: ignore[arg-type]
        assert await asyncio.to_thread(cli.main, command) == 1, "127.0.0.1 is not a name the certificate carries"
        assert await asyncio.to_thread(cli.main, [*command[:4], "-o", str(archive)]) == 1, "plaintext to a TLS port"
