"""Every grpcurl recipe in docs/operations-grpcurl.md runs against a live, secure suite.

The recipes are the ```bash blocks whose first line is ``# recipe: <name>``.
They run in document order, in one shell session as a reader would run them
(exported variables carry over), with the real pinned grpcurl binary and the
real ``loomflow token`` command. Directives in a recipe's leading comments:

* ``# expect: <text>``: the text must appear in the recipe's output;
* ``# exit: <n>``: the exit status the recipe must end with (default 0);
* ``# stream:``: the recipe keeps a server stream open; once every expected
  text has appeared it is interrupted (SIGINT, as Ctrl-C), and it must still
  have been running then.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.processes import REPO, source_env
from tests.support.secure_serve import SecureSuite, secure_suite

DOC = REPO / "docs" / "operations-grpcurl.md"
DOC_ADDRESS = "127.0.0.1:50051"
RECIPE_TIMEOUT_S = 60.0

# What the operations page must cover (issue 8); each name is a recipe.
REQUIRED_RECIPES = {
    "tokens",
    "list-services",
    "describe",
    "protoset",
    "health",
    "remember",
    "recall",
    "budget-status",
    "watch-approvals",
    "resolve-approval",
    "verify-audit",
    "export-user",
}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@dataclass(frozen=True)
class Recipe:
    name: str
    script: str
    expects: list[str] = field(default_factory=list)
    exit_code: int = 0
    stream: bool = False


def parse_recipes(markdown: str) -> list[Recipe]:
    recipes: list[Recipe] = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL):
        lines = block.splitlines()
        header = re.fullmatch(r"# recipe: (\S+)", lines[0]) if lines else None
        if header is None:
            continue
        expects: list[str] = []
        exit_code, stream = 0, False
        for line in lines[1:]:
            if not line.startswith("# "):
                break
            key, _, value = line[2:].partition(":")
            if key == "expect":
                expects.append(value.strip())
            elif key == "exit":
                exit_code = int(value)
            elif key == "stream":
                stream = True
            else:
                raise ValueError(f"recipe {header[1]}: unknown directive {line!r}")
        recipes.append(Recipe(header[1], block, expects, exit_code, stream))
    return recipes


RECIPES = parse_recipes(DOC.read_text())


def _grpcurl_dir() -> Path:
    gopath = subprocess.run(["go", "env", "GOPATH"], capture_output=True, text=True, check=False).stdout.strip()
    binary = Path(gopath or Path.home() / "go") / "bin" / "grpcurl"
    if not binary.exists():
        message = f"grpcurl is not installed at {binary}: run scripts/install-tools.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary.parent


@dataclass
class Session:
    """A reader's terminal: a working folder, an environment and exported state."""

    suite: SecureSuite
    workdir: Path
    env: dict[str, str]
    state: Path

    def script(self, recipe: Recipe) -> str:
        body = recipe.script.replace(DOC_ADDRESS, self.suite.address)
        return f"set -euo pipefail\nsource {self.state}\n{body}\nexport -p > {self.state}\n"

    def popen(self, recipe: Recipe) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["bash", "-c", self.script(recipe)],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, so SIGINT reaches grpcurl
        )


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    grpcurl_dir = _grpcurl_dir()
    workdir = tmp_path_factory.mktemp("grpcurl-session")
    (workdir / "clients").symlink_to(REPO / "clients")  # recipes run "from the repository root"
    bin_dir = workdir / ".bin"
    bin_dir.mkdir()
    shim = bin_dir / "loomflow"  # the installed console script, from the source tree
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m loomflow.cli "$@"\n')
    shim.chmod(0o755)
    state = workdir / ".state.sh"
    with secure_suite(tmp_path_factory.mktemp("grpcurl-suite")) as suite:
        env = {
            **source_env(),
            "PATH": os.pathsep.join([str(bin_dir), str(grpcurl_dir), os.environ.get("PATH", "")]),
            "LOOMFLOW_AUTH_JWT_SECRET": suite.jwt_secret,
            "HOME": str(workdir),
        }
        state.write_text("")
        yield Session(suite, workdir, env, state)


def test_the_page_documents_every_required_operation() -> None:
    names = [r.name for r in RECIPES]
    assert len(names) == len(set(names)), f"duplicate recipe names: {names}"
    missing = REQUIRED_RECIPES - set(names)
    assert not missing, f"docs/operations-grpcurl.md lacks recipes: {sorted(missing)}"
    for recipe in RECIPES:
        # The tokens recipe is checked by what it exports (see below).
        assert recipe.expects or recipe.name == "tokens", f"recipe {recipe.name} checks nothing: add '# expect:'"
        calls_loomflow = re.search(r"loomflow\.v1\.\w+Service/", recipe.script) is not None
        assert not calls_loomflow or "authorization: Bearer" in recipe.script or recipe.exit_code != 0, (
            f"recipe {recipe.name} calls a loomflow RPC without an authorization header"
        )


def _run_to_end(session: Session, recipe: Recipe) -> tuple[int, str]:
    process = session.popen(recipe)
    try:
        output, _ = process.communicate(timeout=RECIPE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"recipe {recipe.name} did not finish in {RECIPE_TIMEOUT_S}s:\n{output}")
    return process.returncode, output


def _run_stream(session: Session, recipe: Recipe) -> tuple[int, str]:
    process = session.popen(recipe)
    chunks: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: chunks.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + RECIPE_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        if all(text in "".join(chunks) for text in recipe.expects):
            break
        time.sleep(0.1)
    still_streaming = process.poll() is None
    if still_streaming:
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    reader.join(timeout=5)
    output = "".join(chunks)
    assert still_streaming, f"stream recipe {recipe.name} ended by itself (exit {process.returncode}):\n{output}"
    return recipe.exit_code, output


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_recipe_runs_as_documented(session: Session, recipe: Recipe) -> None:
    code, output = _run_stream(session, recipe) if recipe.stream else _run_to_end(session, recipe)
    assert code == recipe.exit_code, f"recipe {recipe.name} exited {code}, documented {recipe.exit_code}:\n{output}"
    missing = [text for text in recipe.expects if text not in output]
    assert not missing, f"recipe {recipe.name} output lacks {missing}:\n{output}"
    if recipe.name == "tokens":
        shown = subprocess.run(
            ["bash", "-c", f'source {session.state}; printf "%s\\n" "$TOKEN" "$OPERATOR_TOKEN" "$ALICE_TOKEN"'],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        assert all(token.count(".") == 2 for token in shown[:3]), f"the tokens recipe minted no JWTs: {shown}"
