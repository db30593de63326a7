"""loomflow-client installs alone: its wheel depends on grpcio, protobuf and googleapis-common-protos
only, holds the generated code and loomflow.client and nothing of the servers, and neither wheel
ships a top-level ``buf`` package. (.ci/run also installs the client wheel into an empty venv and
makes real calls with it: scripts/client_smoke.py.)"""

from __future__ import annotations

import ast
import email
import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "clients" / "python"
CLIENT_DEPENDENCIES = {"grpcio", "protobuf", "googleapis-common-protos"}
EXTRA_PACKAGES = {"asyncpg", "redis", "chromadb", "anthropic", "openai"}


def build(source: Path, out: Path) -> Path:
    if importlib.util.find_spec("hatchling") is None:
        message = "hatchling (a dev extra) is needed to build the wheels offline"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    subprocess.run([*command, str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("*.whl")
    return wheel


def metadata(wheel: Path) -> tuple[set[str], email.message.Message]:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        return names, email.message_from_bytes(archive.read(meta))


@pytest.fixture(scope="module")
def client_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(CLIENT, tmp_path_factory.mktemp("client"))


@pytest.fixture(scope="module")
def server_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(REPO, tmp_path_factory.mktemp("server"))


def test_client_wheel_depends_on_grpcio_protobuf_and_common_protos_only(client_wheel: Path) -> None:
    _, meta = metadata(client_wheel)
    assert meta["Name"] == "loomflow-client"
    required = {Requirement(r).name.lower() for r in meta.get_all("Requires-Dist") or []}
    assert required == CLIENT_DEPENDENCIES, f"the client wheel requires {sorted(required)}"


def test_client_wheel_holds_the_contract_and_the_client_and_no_server_code(client_wheel: Path) -> None:
    names, _ = metadata(client_wheel)
    files = {n for n in names if ".dist-info/" not in n}
    top_level = {n.split("/")[0] for n in files}
    assert top_level == {"loomflow"}, f"top-level entries besides loomflow: {top_level - {'loomflow'}}"
    packages = {n.split("/")[1] for n in files}
    assert packages == {"v1", "client", "_vendor"}, f"unexpected loomflow subpackages: {packages}"
    for required in ("loomflow/v1/memory_pb2.py", "loomflow/client/__init__.py", "loomflow/client/py.typed"):
        assert required in files
    assert "loomflow/_vendor/buf/validate/validate_pb2.py" in files, "the messages import the vendored rules"


def test_client_sources_import_only_the_standard_library_grpc_and_protobuf() -> None:
    allowed = set(sys.stdlib_module_names) | {"grpc", "google", "typing_extensions"}
    offenders = []
    for path in (CLIENT / "loomflow").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            for module in modules:
                top = module.split(".")[0]
                client_side = module.startswith(("loomflow.v1", "loomflow.client", "loomflow._vendor"))
                if top not in allowed and not client_side:
                    offenders.append(f"{path.relative_to(REPO)}: {module}")
    assert not offenders, f"client code imports beyond grpc/protobuf: {offenders}"


def test_server_wheel_leaves_the_contract_to_the_client_and_heavy_backends_to_extras(server_wheel: Path) -> None:
    names, meta = metadata(server_wheel)
    files = {n for n in names if ".dist-info/" not in n}
    assert {n.split("/")[0] for n in files} == {"loomflow"}, "no top-level package besides loomflow (no `buf`)"
    assert not {n for n in files if n.startswith(("loomflow/v1/", "loomflow/client/", "loomflow/_vendor/"))}, (
        "the server wheel repeats files of loomflow-client: installing both would clash"
    )
    unconditional = set()
    for line in meta.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker is None or "extra" not in str(requirement.marker):
            unconditional.add(requirement.name.lower())
    assert "loomflow-client" in unconditional
    assert not unconditional & EXTRA_PACKAGES, f"heavy backends outside extras: {unconditional & EXTRA_PACKAGES}"
    assert set(meta.get_all("Provides-Extra") or []) >= {"postgres", "redis", "chroma", "anthropic", "openai"}
