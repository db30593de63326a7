"""The Python snippets of docs/agent.md run, as written, against a live secure suite."""

from __future__ import annotations

import ast
import re
import types
from pathlib import Path

import pytest

from loomflow.kernel.auth import Role
from tests.agent.conftest import secure_suite, token
from tests.support.processes import REPO

DOC = REPO / "docs" / "agent.md"
DOC_ADDRESS = "127.0.0.1:50051"


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_doc_has_snippets() -> None:
    assert len(snippets()) >= 4


@pytest.mark.parametrize("index", range(len(snippets())))
async def test_doc_snippet_runs(tmp_path: Path, index: int) -> None:
    source = snippets()[index]
    async with secure_suite(tmp_path) as tenancy:
        code = compile(
            source.replace(DOC_ADDRESS, tenancy.address),
            f"docs/agent.md snippet {index + 1}",
            "exec",
            flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        )
        namespace = {"alice_token": token("alice"), "operator_token": token("ops", Role.OPERATOR)}
        result = eval(code, namespace)  # top-level await makes this a coroutine when the snippet awaits
        if isinstance(result, types.CoroutineType):
            await result
