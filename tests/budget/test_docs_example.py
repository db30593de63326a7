"""The Reserve/Commit grpcurl example in docs/budget.md runs as written, against a secure server."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.testing.suite import TEST_JWT_SECRET, running_suite

DOC = Path(__file__).resolve().parents[2] / "docs" / "budget.md"
DOC_ADDRESS = "127.0.0.1:50051"


def example() -> str:
    text = DOC.read_text().replace("<!-- run -->\n", "")  # the marker tests/test_docs_run.py reads
    after = text.split("A reservation and its\ncommit, with a service token:\n\n```bash\n", 1)[1]
    return after.split("```", 1)[0]


def grpcurl_dir() -> Path:
    gopath = subprocess.run(["go", "env", "GOPATH"], capture_output=True, text=True, check=False).stdout.strip()
    binary = Path(gopath or Path.home() / "go") / "bin" / "grpcurl"
    if not binary.exists():
        message = f"grpcurl is not installed at {binary}: run scripts/install-tools.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary.parent


async def test_reserve_then_commit_example_charges_what_the_doc_implies(tmp_path: Path) -> None:
    tools = grpcurl_dir()
    async with running_suite(tmp_path, services="budget", insecure=False) as running:
        token = mint_token(AuthSettings(jwt_secret=TEST_JWT_SECRET), "agent", Role.SERVICE)
        script = "set -euo pipefail\n" + example().replace(DOC_ADDRESS, running.address)
        env = {**os.environ, "TOKEN": token, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", script, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    text = output.decode()
    assert process.returncode == 0, text
    # 1,600 uncached x 3 + 2,000 cached x 0.3 + 420 output x 15 micro-USD (claude-sonnet-4)
    assert '"cost_micros": "11700"' in text, text
    assert '"priced_as": "claude-sonnet-4"' in text, text
