"""The Dockerfile builds a small, non-root image that runs any one service.

No Docker engine is needed: the Dockerfile is parsed and checked against the code
(ports, entrypoint, variables) and the k8s manifests (user id), and its builder
stage is replayed offline: exactly the files its COPY lines take from the
.dockerignore-filtered context are assembled, and `pip wheel` builds the wheel
from them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loomflow import suite
from loomflow.kernel import config
from loomflow.kernel.settings import ServerSettings
from tests.support.manifests import K8S, Rendered, image_name, kustomize, pod_spec

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PYTHON_BASE = re.compile(r"python:3\.11-slim@sha256:[0-9a-f]{64}")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for kw, arguments in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions per stage, continuation lines joined, comments dropped, global ARG defaults applied."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), arguments.strip()
        if keyword == "ARG" and not stages:
            name, _, default = arguments.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            for name, value in global_args.items():
                arguments = arguments.replace("${" + name + "}", value).replace("$" + name, value)
            parts = arguments.split()
            stages.append(Stage(base=parts[0], name=parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else ""))
        else:
            assert stages, f"instruction before FROM: {line}"
            stages[-1].instructions.append((keyword, arguments))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


def env_of(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for arguments in stage.all("ENV"):
        for pair in shlex.split(arguments):
            key, _, value = pair.partition("=")
            values[key] = value
    return values


def test_image_is_built_in_two_stages_on_python_slim_pinned_by_digest(stages: list[Stage]) -> None:
    assert [s.name for s in stages] == ["builder", "runtime"]
    assert all(PYTHON_BASE.fullmatch(s.base) for s in stages), f"base not pinned by digest: {[s.base for s in stages]}"
    assert len({s.base for s in stages}) == 1, "both stages must start from the same base"


def test_builder_installs_only_hash_locked_dependencies_and_the_projects_own_wheels(stages: list[Stage]) -> None:
    builder_runs = " ".join(stages[0].all("RUN"))
    assert "/opt/loomflow/bin/pip install --require-hashes --no-deps -r requirements/image.lock" in builder_runs
    assert "pip install --require-hashes --no-deps -r requirements/build.lock" in builder_runs
    assert "pip wheel --no-deps --no-build-isolation" in builder_runs, "wheels built with the locked backend"
    installs = re.findall(r"/opt/loomflow/bin/pip install ([^&]*)", builder_runs)
    for arguments in installs:
        assert "--require-hashes" in arguments or "--no-deps" in arguments.split(), (
            f"an install that may resolve unpinned versions: pip install {arguments}"
        )
    assert re.search(r"--no-deps /wheels/loomflow_client-\S*\.whl /wheels/loomflow-\S*\.whl", builder_runs)
    assert "pip check" in builder_runs, "the lock must satisfy both wheels' requirements"


def test_runtime_stage_takes_only_the_virtualenv_and_needs_no_shell(runtime: Stage) -> None:
    copies = runtime.all("COPY")
    assert copies, "the runtime stage copies the virtualenv from the builder"
    assert all(c.startswith("--from=builder") for c in copies), f"runtime copies from the context: {copies}"
    assert any(c.split()[-2:] == ["/opt/loomflow", "/opt/loomflow"] for c in copies)
    assert runtime.all("RUN") == [], "a RUN step would need a shell in the runtime image"
    assert runtime.all("ADD") == []


def test_runtime_user_is_numeric_non_root_and_matches_the_pods(runtime: Stage) -> None:
    (user,) = runtime.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), f"USER {user}: numeric, so runAsNonRoot can verify it"
    assert gid.isdigit(), f"USER {user}: numeric group"
    assert int(uid) != 0
    for workload, container in Rendered(kustomize(K8S / "overlays" / "dev")).containers():
        if image_name(container) == "loomflow":
            context = pod_spec(workload)["securityContext"]
            assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid)), workload["metadata"]["name"]


def test_entrypoint_serves_and_exposes_the_default_ports(runtime: Stage) -> None:
    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["loomflow", "serve"], "exec form, so SIGTERM reaches the server's drain"
    exposed = {int(p.split("/")[0]) for arguments in runtime.all("EXPOSE") for p in arguments.split()}
    defaults = ServerSettings()
    assert exposed == {defaults.port, defaults.metrics_port}


def test_image_environment_sets_only_real_options(runtime: Stage) -> None:
    known = {o.env for s, cls in suite.sections() for o in config.options(s, cls)}
    env = env_of(runtime)
    for variable in env:
        if variable.startswith(config.ENV_PREFIX):
            assert variable in known, f"ENV {variable} is read by no loomflow code"
    settings = config.load("", ServerSettings, env={k: v for k, v in env.items() if k.startswith("LOOMFLOW_")})
    assert settings.host == "0.0.0.0", "a container must listen on all interfaces"
    assert env["HOME"] == "/tmp", "the only writable scratch folder under a read-only root"


# ---------------------------------------------------------------- the build context, replayed


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exception, regex) per .dockerignore line, as Docker's pattern matcher reads them."""
    patterns: list[tuple[bool, re.Pattern[str]]] = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"  # any number of folders, including none
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        patterns.append((negated, re.compile(regex + r"\Z")))
    return patterns


def in_context(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether a file reaches the build context: the last pattern matching it or a parent decides."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, regex in patterns:
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negated
    return not excluded


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_context() -> None:
    patterns = dockerignore_patterns()
    for path in (
        "k8s/overlays/prod/secrets/auth.env",
        ".git/config",
        ".venv/bin/python",
        "bench/results/x.json",
        "services/loomflow/__pycache__/cli.cpython-311.pyc",
        "tests/conftest.py",
    ):
        assert not in_context(path, patterns), f"{path} would be sent to the Docker daemon"
    for path in (
        "pyproject.toml",
        "README.md",
        "requirements/image.lock",
        "requirements/build.lock",
        "services/loomflow/cli/__init__.py",
        "clients/python/pyproject.toml",
        "clients/python/loomflow/v1/memory_pb2.py",
    ):
        assert in_context(path, patterns), f"{path} is needed by the build but excluded"


def test_builder_copies_are_enough_to_build_a_wheel_that_runs_loomflow_serve(
    tmp_path: Path, stages: list[Stage]
) -> None:
    if importlib.util.find_spec("hatchling") is None:
        message = "hatchling (a dev extra) is needed to build the wheel offline"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    patterns = dockerignore_patterns()
    context = tmp_path / "context"
    for arguments in stages[0].all("COPY"):
        *sources, _ = arguments.split()
        for source in sources:
            origin = REPO / source.rstrip("/")
            files = [origin] if origin.is_file() else [p for p in origin.rglob("*") if p.is_file()]
            for path in files:
                relative = path.relative_to(REPO).as_posix()
                if in_context(relative, patterns):
                    (context / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, context / relative)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"),
            *("-w", str(wheels), "./clients/python", "."),
        ],
        cwd=context,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (server,) = wheels.glob("loomflow-*.whl")
    (client,) = wheels.glob("loomflow_client-*.whl")
    with zipfile.ZipFile(server) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    with zipfile.ZipFile(client) as archive:
        names |= set(archive.namelist())
    for required in (
        "loomflow/cli/__init__.py",
        "loomflow/kernel/server.py",
        "loomflow/v1/memory_pb2.py",
        "loomflow/_vendor/buf/validate/validate_pb2.py",
        *(f"loomflow/{name}/service.py" for name in suite.SERVICE_NAMES),
    ):
        assert required in names, f"the image's wheels lack {required}"
    assert re.search(r"^loomflow = loomflow\.cli:main$", scripts, re.M), "ENTRYPOINT loomflow needs the console script"
