"""requirements/*.lock pin every package with hashes, agree with the pyproject files, and are what
bootstrap, CI and the image install (pip --require-hashes), so all three get the same bytes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCKS = ("dev", "client", "image", "build")


def pins(lock: str) -> dict[str, set[str]]:
    """name → versions of every package in requirements/<lock>.lock; asserts each is hashed.

    The locks are universal: a package may have one pin per Python range (numpy does), each
    behind an environment marker."""
    text = (REPO / "requirements" / f"{lock}.lock").read_text()
    entries = re.sub(r"\\\n\s*", " ", text).splitlines()
    found: dict[str, set[str]] = {}
    for entry in entries:
        entry = entry.split("#", 1)[0].strip()
        if not entry:
            continue
        requirement, _, hashes = entry.partition(" --hash=")
        assert hashes, f"{lock}.lock: {requirement} has no hash"
        spec = Requirement(requirement.strip())
        (pinned,) = list(spec.specifier)
        assert pinned.operator == "==", f"{lock}.lock: {requirement} is not pinned to one version"
        found.setdefault(canonicalize_name(spec.name), set()).add(pinned.version)
    assert found, f"{lock}.lock is empty"
    return found


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_input_is_what_the_pyproject_files_ask_for_now(lock: str) -> None:
    fresh = subprocess.run(
        [sys.executable, "scripts/requirements.py", lock], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    committed = (REPO / "requirements" / f"{lock}.in").read_text()
    assert committed == fresh, f"pyproject changed since the last lock: run `make lock` ({lock})"


@pytest.mark.parametrize("lock", LOCKS)
def test_every_requirement_is_satisfied_by_a_hashed_pin(lock: str) -> None:
    pinned = pins(lock)
    for line in (REPO / "requirements" / f"{lock}.in").read_text().split():
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock}.lock lacks {requirement.name}: run `make lock`"
        outside = [v for v in pinned[name] if not requirement.specifier.contains(v, prereleases=True)]
        assert not outside, f"{lock}.lock pins {name} {outside}, outside {requirement}: run `make lock`"


@pytest.mark.parametrize("lock", ["client", "image", "build"])
def test_every_set_uses_the_versions_development_and_ci_test(lock: str) -> None:
    dev = pins("dev")
    differ = {name: (versions, dev.get(name)) for name, versions in pins(lock).items() if versions != dev.get(name)}
    assert not differ, f"{lock}.lock differs from dev.lock (lock, dev): {differ}"


def test_client_lock_holds_no_server_dependency() -> None:
    assert not {"protovalidate", "asyncpg", "numpy", "opentelemetry-sdk", "chromadb"} & set(pins("client"))


def test_image_lock_leaves_chroma_out() -> None:
    assert "chromadb" not in pins("image"), "chroma (~0.3 GB) is not an image extra"
    assert "onnxruntime" not in pins("image")


def test_bootstrap_ci_and_image_install_from_the_locks_with_hashes() -> None:
    bootstrap = (REPO / "scripts" / "bootstrap.sh").read_text()
    assert "--require-hashes --no-deps" in bootstrap
    for lock in ("dev", "image", "build"):
        assert f"requirements/{lock}.lock" in bootstrap
    ci = (REPO / ".ci" / "run").read_text()
    assert "--require-hashes --no-deps -r requirements/image.lock" in ci
    assert "--require-hashes --no-deps -r requirements/client.lock" in ci
    assert "--require-hashes --no-deps -r requirements/image.lock" in (REPO / "Dockerfile").read_text()
