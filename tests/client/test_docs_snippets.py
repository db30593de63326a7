"""The Python snippets of docs/agent.md are complete programs: each, saved as a file and run with
`python`, works against a live secure suite, with the tokens in the environment as the page says."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from loomflow.kernel.auth import Role
from loomflow.testing.processes import source_env
from tests.agent.conftest import secure_suite, token
from tests.support.repo import REPO

DOC = REPO / "docs" / "agent.md"
DOC_ADDRESS = "127.0.0.1:50051"


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_doc_has_snippets() -> None:
    assert len(snippets()) >= 4


@pytest.mark.parametrize("index", range(len(snippets())))
async def test_doc_snippet_runs_as_a_program(tmp_path: Path, index: int) -> None:
    program = tmp_path / f"snippet_{index + 1}.py"
    async with secure_suite(tmp_path) as tenancy:
        program.write_text(snippets()[index].replace(DOC_ADDRESS, tenancy.address))
        env = {**source_env(), "ALICE_TOKEN": token("alice"), "OPERATOR_TOKEN": token("ops", Role.OPERATOR)}
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(program), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, f"docs/agent.md snippet {index + 1} failed:\n{output.decode()}"
