"""`loomflow serve` runs on uvloop by default, on plain asyncio when asked, and refuses anything else."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from loomflow.kernel import eventloop
from loomflow.kernel.config import ConfigError
from loomflow.testing.processes import ServeProcess, source_env
from loomflow.v1 import policy_pb2, policy_pb2_grpc, tenancy_pb2


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


@pytest.mark.parametrize("name", eventloop.EVENT_LOOPS)
def test_run_uses_the_named_loop(name: str) -> None:
    assert eventloop.run(_loop_module(), name) == name


def test_an_unknown_loop_is_a_configuration_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="LOOMFLOW_EVENT_LOOP"):
        eventloop.run(_loop_module(), "trio")


def _serving_line(serve: ServeProcess) -> dict[str, object]:
    log = serve.data_dir / f"serve-{serve.port}.log"
    for line in log.read_text().splitlines():
        if line.startswith("{") and json.loads(line).get("msg") == "serving":
            entry: dict[str, object] = json.loads(line)
            return entry
    raise AssertionError(f"no 'serving' line in {log}")


@pytest.mark.parametrize(("configured", "expected"), [(None, "uvloop"), ("asyncio", "asyncio")])
async def test_serve_answers_on_the_configured_loop(tmp_path: Path, configured: str | None, expected: str) -> None:
    env = {"LOOMFLOW_INSECURE": "true", "LOOMFLOW_LOG_LEVEL": "info", "LOOMFLOW_TRACING": "false"}
    if configured is not None:
        env["LOOMFLOW_EVENT_LOOP"] = configured
    with ServeProcess("policy", tmp_path, env=env) as serve:
        async with grpc.aio.insecure_channel(serve.address) as channel:
            answer = await policy_pb2_grpc.PolicyServiceStub(channel).Check(
                policy_pb2.CheckRequest(scope=tenancy_pb2.UserScope(user_id="loop-tenant"), tool_name="calculator")
            )
        assert answer.decision_id
        assert _serving_line(serve)["event_loop"] == expected


def test_serve_refuses_an_unknown_loop_with_exit_status_2(tmp_path: Path) -> None:
    env = {**source_env(), "LOOMFLOW_EVENT_LOOP": "trio", "LOOMFLOW_INSECURE": "true", "LOOMFLOW_PORT": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "loomflow.cli", "serve", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "LOOMFLOW_EVENT_LOOP" in done.stderr
