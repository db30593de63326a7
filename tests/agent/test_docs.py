"""docs/agent.md documents every Agent option under its flag and variable."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from loomflow.agent.service import SECTION, Settings
from loomflow.kernel import config
from loomflow.testing.processes import loomflow_script, source_env
from loomflow.testing.secure import secure_suite
from tests.support.repo import REPO


def test_every_agent_option_is_in_the_configuration_table() -> None:
    text = (REPO / "docs" / "agent.md").read_text()
    missing = [o.env for o in config.options(SECTION, Settings) if f"| `{o.flag}` | `{o.env}` |" not in text]
    assert not missing, f"docs/agent.md lacks a table row for {missing}"


def grpcurl_block() -> str:
    text = (REPO / "docs" / "agent.md").read_text()
    blocks: list[str] = re.findall(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    return next(b for b in blocks if "AgentService/Run" in b)


@pytest.mark.slow  # a `loomflow serve` process, `loomflow token` and grpcurl: ~10 s on a busy machine
def test_the_grpcurl_recipe_runs_against_a_live_secure_suite(tmp_path: Path) -> None:
    grpcurl = Path.home() / "go" / "bin" / "grpcurl"
    if shutil.which("grpcurl") is None and not grpcurl.exists():
        message = "grpcurl is not installed: run scripts/install-tools.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with secure_suite(tmp_path / "data") as suite:
        env = {
            **source_env(),
            "PATH": f"{loomflow_script().parent}:{grpcurl.parent}:{os.environ['PATH']}",
            "LOOMFLOW_AUTH_JWT_SECRET": suite.jwt_secret,
        }
        script = "set -euo pipefail\n" + grpcurl_block().replace("127.0.0.1:50051", suite.address)
        done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"output": "hello"' in done.stdout
    assert '"tool_call"' in done.stdout
    assert '"result": "42"' in done.stdout
