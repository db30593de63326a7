"""The Go client (clients/go) passes `go test ./...` against a live, secure loomflow suite.

The suite is a real `loomflow serve` process verifying real tokens; the Go
tests (clients/go/livetest) call every service through the hand-written client
and check success paths, INVALID_ARGUMENT with BadRequest field violations for
bad scopes, and NOT_FOUND for another tenant's records. `go vet` and `gofmt`
keep the module clean.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loomflow.testing.secure import SecureSuite, secure_suite
from tests.support.repo import REPO

GO_MODULE = REPO / "clients" / "go"
DOCS = REPO / "docs" / "go-client.md"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        message = "the Go toolchain is not installed (`go` not on PATH)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return go


def _run_go(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_go(), *args],
        cwd=GO_MODULE,
        env={**os.environ, "GOFLAGS": "-mod=readonly", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


@pytest.fixture(scope="module")
def go_modules() -> None:
    """Downloads the pinned modules once (from the Go module proxy, checked against go.sum)."""
    result = _run_go("mod", "download")
    assert result.returncode == 0, "go mod download failed:\n" + _explain(result)


@pytest.fixture(scope="module")
def live_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureSuite]:
    with secure_suite(tmp_path_factory.mktemp("go-client-suite")) as running:
        yield running


@dataclass
class GoTestReport:
    """What `go test -json` said, test by test (subtests included)."""

    outcomes: dict[str, str] = field(default_factory=dict)  # "pkg TestName" -> pass/fail/skip
    output: dict[str, list[str]] = field(default_factory=dict)
    transcript: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, stdout: str) -> GoTestReport:
        report = cls()
        for line in stdout.splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                report.transcript.append(line)  # build errors are not JSON
                continue
            key = f"{event.get('Package', '')} {event.get('Test', '')}".strip()
            if event.get("Action") == "output":
                report.transcript.append(event["Output"].rstrip("\n"))
                report.output.setdefault(key, []).append(event["Output"].strip())
            elif event.get("Action") in ("pass", "fail", "skip") and event.get("Test"):
                report.outcomes[key] = event["Action"]
        return report

    def tests(self, outcome: str, package_suffix: str = "") -> list[str]:
        return sorted(k for k, v in self.outcomes.items() if v == outcome and k.split()[0].endswith(package_suffix))

    def skip_reason(self, key: str) -> str:
        """The test's own log lines (t.Skipf's message among them)."""
        return " | ".join(o for o in self.output.get(key, []) if not o.startswith(("=== ", "--- ")))


@pytest.mark.usefixtures("go_modules")
def test_go_client_tests_pass_against_the_live_suite(live_suite: SecureSuite) -> None:
    env = {**live_suite.client_env(), "LOOMFLOW_TEST_LIVE_REQUIRED": "1"}
    result = _run_go("test", "-count=1", "-json", "./...", env=env)
    report = GoTestReport.parse(result.stdout)
    transcript = "\n".join(report.transcript)
    assert result.returncode == 0, (
        f"go test ./... failed against the live suite: {report.tests('fail')}\n{transcript}\n{result.stderr}"
    )
    live_passed = report.tests("pass", "/livetest")
    assert live_passed, f"no live Go test passed:\n{transcript}"

    # Every service is implemented: a Go test skipping as PENDING (its service
    # answered UNIMPLEMENTED) means a service lost an RPC, so it fails here.
    skipped = {key.split()[-1]: report.skip_reason(key) for key in report.tests("skip")}
    assert not skipped, f"Go tests skipped against the full suite: {skipped}"


@pytest.mark.usefixtures("go_modules")
def test_go_vet_finds_nothing() -> None:
    result = _run_go("vet", "./...")
    assert result.returncode == 0, "go vet ./... reported problems:\n" + _explain(result)


def test_go_sources_are_gofmt_formatted() -> None:
    gofmt = Path(_go()).with_name("gofmt")
    result = subprocess.run([str(gofmt), "-l", "."], cwd=GO_MODULE, capture_output=True, text=True, check=False)
    assert result.returncode == 0, _explain(result)
    assert result.stdout.strip() == "", f"files not gofmt-formatted (run gofmt -w):\n{result.stdout}"


def _docs_snippet(name: str) -> str:
    found = re.search(rf"```go\n(// docs snippet: {name}\n.*?)```", DOCS.read_text(), re.DOTALL)
    assert found is not None, f"docs/go-client.md lost its {name!r} snippet"
    return found.group(1)


@pytest.mark.usefixtures("go_modules")
def test_the_documented_go_snippet_runs_against_the_live_suite(live_suite: SecureSuite) -> None:
    # A folder starting with "_" inside the module: it resolves the module's own
    # packages and pinned deps, and ./... patterns (go vet, go test) skip it.
    with tempfile.TemporaryDirectory(prefix="_docsnippet", dir=GO_MODULE) as folder:
        (Path(folder) / "main.go").write_text(_docs_snippet("remember-recall"))
        gofmt = subprocess.run(
            [str(Path(_go()).with_name("gofmt")), "-l", folder], capture_output=True, text=True, check=False
        )
        assert gofmt.stdout.strip() == "", "the docs snippet is not gofmt-formatted"
        env = {"LOOMFLOW_ADDR": live_suite.address, "LOOMFLOW_TOKEN": live_suite.service_token}
        result = _run_go("run", "./" + Path(folder).name, env=env)
    assert result.returncode == 0, "the docs snippet failed:\n" + _explain(result)
    assert "recalled: My favourite colour is teal." in result.stdout, result.stdout
    assert "bob reads alice's episode: not found = true" in result.stdout, result.stdout


def test_go_module_path_matches_its_directory_for_tags() -> None:
    """`go get …/clients/go@vX` resolves tag `clients/go/vX` only if the module path ends in its directory."""
    module = re.search(r"^module (\S+)$", (GO_MODULE / "go.mod").read_text(), re.MULTILINE)
    assert module is not None, "clients/go/go.mod names no module"
    directory = GO_MODULE.relative_to(REPO).as_posix()
    assert module.group(1).endswith("/" + directory), f"{module.group(1)} is not <repository>/{directory}"
    repository = module.group(1).removesuffix("/" + directory)
    docs = DOCS.read_text()
    assert f"tag `{directory}/v0.1.0`" in docs, "docs/go-client.md no longer documents the tag scheme"
    assert f"go get {repository}/{directory}@v0.1.0" in docs
