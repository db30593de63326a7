"""The third-party requirements of one install set, read from the pyproject files.

    python scripts/requirements.py client|image|dev|build

client: what loomflow-client needs (clients/python/pyproject.toml).
image:  the server with the extras the container image ships (IMAGE_EXTRAS).
dev:    the server with every extra, plus the dev and bench tools (what bootstrap installs).
build:  the installer and build backend at their dev pins (uv, hatchling): bootstrap installs them
        first, the image's builder builds the wheels with them (--no-build-isolation).

The project's own two distributions are left out (they are built from the checkout and installed
with --no-deps); their dependencies are listed instead. scripts/lock.sh compiles each set into
requirements/<set>.lock with hashes; tests/test_lock_files.py checks the committed .in files
are what this prints, so a pyproject change without a re-lock fails.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
OWN = {"loomflow", "loomflow-client"}
BUILD_TOOLS = {"hatchling", "uv"}
IMAGE_EXTRAS = ("postgres", "redis", "anthropic", "openai")
"""chroma stays out of the image: ~0.3 GB installed (onnxruntime, tokenizers, a kubernetes client)
for a backend the Kubernetes manifests do not use."""


def table(path: Path) -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads(path.read_text())["project"]
    return project


def requirements(kind: str) -> list[str]:
    client = table(REPO / "clients" / "python" / "pyproject.toml")
    server = table(REPO / "pyproject.toml")
    extras: dict[str, list[str]] = server["optional-dependencies"]
    chosen: list[str] = list(client["dependencies"])
    if kind in ("image", "dev"):
        chosen += server["dependencies"]
        for name in IMAGE_EXTRAS if kind == "image" else tuple(extras):
            chosen += extras[name]
    elif kind == "build":
        chosen = [r for r in extras["dev"] if Requirement(r).name.lower() in BUILD_TOOLS]
    elif kind != "client":
        raise SystemExit(f"usage: {sys.argv[0]} client|image|dev|build")
    own = [line for line in chosen if Requirement(line).name.lower() not in OWN]
    return sorted(set(own), key=str.lower)


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1] if len(sys.argv) > 1 else "")))
