"""Every grpcurl recipe in docs/policy.md runs as documented against a live, secure server.

Same rules as tests/test_grpcurl_recipes.py (whose runner this reuses): recipes run in
document order in one shell session, with the real grpcurl binary and the real
``loomflow token``; ``# expect:`` texts must appear, ``# exit:`` is the exit status,
``# stream:`` recipes are interrupted once their expected output has appeared.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from tests.support.processes import REPO, source_env
from tests.support.secure_serve import secure_suite
from tests.test_grpcurl_recipes import Recipe, Session, _grpcurl_dir, _run_stream, _run_to_end, parse_recipes

DOC = REPO / "docs" / "policy.md"
RECIPES = parse_recipes(DOC.read_text())
REQUIRED = {"tokens", "put-policy", "check", "request-approval", "watch-all-tenants", "resolve-with-edits"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def policy_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    grpcurl_dir = _grpcurl_dir()
    workdir = tmp_path_factory.mktemp("policy-grpcurl")
    bin_dir = workdir / ".bin"
    bin_dir.mkdir()
    shim = bin_dir / "loomflow"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m loomflow.cli "$@"\n')
    shim.chmod(0o755)
    state = workdir / ".state.sh"
    state.write_text("")
    with secure_suite(tmp_path_factory.mktemp("policy-suite"), services="policy") as suite:
        env = {
            **source_env(),
            "PATH": os.pathsep.join([str(bin_dir), str(grpcurl_dir), os.environ.get("PATH", "")]),
            "LOOMFLOW_AUTH_JWT_SECRET": suite.jwt_secret,
            "HOME": str(workdir),
        }
        yield Session(suite, workdir, env, state)


def test_the_page_has_the_approval_recipes_and_each_checks_something() -> None:
    names = [r.name for r in RECIPES]
    assert len(names) == len(set(names)), f"duplicate recipe names: {names}"
    assert not REQUIRED - set(names), f"docs/policy.md lacks recipes: {sorted(REQUIRED - set(names))}"
    assert all(r.expects for r in RECIPES if r.name != "tokens"), "every recipe needs an '# expect:' line"


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_policy_recipe_runs_as_documented(policy_session: Session, recipe: Recipe) -> None:
    code, output = _run_stream(policy_session, recipe) if recipe.stream else _run_to_end(policy_session, recipe)
    assert code == recipe.exit_code, f"recipe {recipe.name} exited {code}, documented {recipe.exit_code}:\n{output}"
    missing = [text for text in recipe.expects if text not in output]
    assert not missing, f"recipe {recipe.name} output lacks {missing}:\n{output}"
