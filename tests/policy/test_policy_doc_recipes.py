"""Every grpcurl recipe in docs/policy.md runs as documented against a live, secure server.

The recipes (```bash blocks starting ``# recipe: <name>``) run in document order in one shell
session (tests/support/doc_blocks.py), with the real grpcurl binary and the installed ``loomflow``
command (``.venv/bin/loomflow``); ``# expect:`` texts must appear, ``# exit:`` is the exit status,
``# stream:`` recipes are interrupted once their expected output has appeared. The page's address
127.0.0.1:50051 is the test suite's free port.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from loomflow.testing.processes import loomflow_script, source_env
from loomflow.testing.secure import secure_suite
from tests.support.doc_blocks import Block, Session, parse_recipes
from tests.support.repo import REPO

DOC = "docs/policy.md"
RECIPES = parse_recipes(DOC, (REPO / DOC).read_text())
REQUIRED = {"tokens", "put-policy", "check", "request-approval", "watch-all-tenants", "resolve-with-edits"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def grpcurl_dir() -> Path:
    gopath = subprocess.run(["go", "env", "GOPATH"], capture_output=True, text=True, check=False).stdout.strip()
    binary = Path(gopath or Path.home() / "go") / "bin" / "grpcurl"
    if not binary.exists():
        message = f"grpcurl is not installed at {binary}: run scripts/install-tools.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary.parent


@pytest.fixture(scope="module")
def policy_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    tools = grpcurl_dir()
    workdir = tmp_path_factory.mktemp("policy-grpcurl")
    with secure_suite(tmp_path_factory.mktemp("policy-suite"), services="policy") as suite:
        env = {
            **source_env(),
            "PATH": os.pathsep.join([str(loomflow_script().parent), str(tools), os.environ.get("PATH", "")]),
            "LOOMFLOW_AUTH_JWT_SECRET": suite.jwt_secret,
        }
        session = Session(workdir, env, {50051: suite.process.port}, timeout_s=60)
        yield session
        session.close()


def test_the_page_has_the_approval_recipes_and_each_checks_something() -> None:
    names = [r.name for r in RECIPES]
    assert len(names) == len(set(names)), f"duplicate recipe names: {names}"
    assert not REQUIRED - set(names), f"docs/policy.md lacks recipes: {sorted(REQUIRED - set(names))}"
    assert all(r.expects for r in RECIPES if r.name != "tokens"), "every recipe needs an '# expect:' line"


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_policy_recipe_runs_as_documented(policy_session: Session, recipe: Block) -> None:
    policy_session.run(recipe)
