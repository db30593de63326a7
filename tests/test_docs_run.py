"""Every command and code block a reader is told to type in README.md and docs/*.md runs as written.

The runnable blocks are marked in the Markdown (``<!-- run -->`` before the fence; see
tests/support/doc_blocks.py for the directives). For each document the test makes a fresh
``git clone`` of this repository in a temporary folder and runs the document's marked blocks in
order, in one shell session, from the clone's root: servers are started the way the document says
(``make serve``, ``loomflow serve …``), commands are the real ones (`.venv/bin/loomflow`, the pinned
grpcurl and ghz, ``go run``); no shim stands in for any of them.

A clone holds what is committed: run it after committing (CI runs it on its own fresh clone).

What the harness decides instead of the reader, and why:

* the clone's ``.venv`` is a symlink to the already bootstrapped venv of this checkout
  (re-bootstrapping per document would take minutes); the venv imports loomflow from this
  checkout's source, so ``PYTHONPATH`` points at the clone's own ``services`` and
  ``clients/python`` (the code under test is the clone's), and the Makefile's bootstrap
  prerequisites are dated before the venv's stamp, as after a bootstrap;
* the ports the docs name (gRPC 50051, metrics 9464, the second server's 6000) are replaced by
  free ones in the blocks' text, and ``LOOMFLOW_PORT`` / ``LOOMFLOW_METRICS_PORT`` name them, so
  the test runs beside a developer's own ``make serve``;
* Go blocks run in a fresh module that requires the clone's ``clients/go`` through a ``replace``
  directive (a reader's own module does the same, see docs/go-client.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loomflow.testing.processes import free_port
from tests.support.doc_blocks import Block, Session, parse
from tests.support.repo import REPO

DOCS = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
BLOCKS = {doc: parse(doc, (REPO / doc).read_text()) for doc in DOCS}
RUNNABLE = [doc for doc in DOCS if BLOCKS[doc]]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _tool_dirs() -> list[str]:
    """Where the reader's shell finds go (the Go tools' folder comes from the docs' own PATH line)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    return [str(Path(go).parent)]


def _required(tool: str) -> None:
    if shutil.which(tool) is None and not Path(tool).exists():
        message = f"{tool} is needed to run the docs"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A fresh clone of this repository, its .venv the bootstrapped one."""
    folder = tmp_path / "loomflow"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(folder)], check=True, timeout=120)
    venv = Path(sys.prefix)
    (folder / ".venv").symlink_to(venv)
    # As after `make`'s own bootstrap: every prerequisite of the venv's stamps is older than they are.
    # Otherwise `make serve` in the clone would re-bootstrap the shared venv, installing the clone
    # (a folder deleted after the test) as the venv's editable loomflow.
    stamps = [venv / name for name in _stamp_prerequisites() if (venv / name).exists()]
    assert stamps, f"{venv} has no bootstrap stamp: run `make test` (or scripts/bootstrap.sh) first"
    before = min(stamp.stat().st_mtime for stamp in stamps) - 60
    for prerequisite in {p for found in _stamp_prerequisites().values() for p in found}:
        if (folder / prerequisite).exists():
            os.utime(folder / prerequisite, (before, before))
    return folder


def _stamp_prerequisites() -> dict[str, list[str]]:
    """The Makefile's bootstrap stamps (``$(VENV)/.stamp…``) and the files each depends on."""
    rules: dict[str, list[str]] = {}
    for line in (REPO / "Makefile").read_text().splitlines():
        target, colon, prerequisites = line.partition(":")
        if colon and target.startswith("$(VENV)/.stamp"):
            rules[target.removeprefix("$(VENV)/")] = prerequisites.split()
    return rules


def session_for(clone: Path) -> Session:
    ports = {50051: free_port(), 9464: free_port(), 6000: free_port()}
    base = {k: v for k, v in os.environ.items() if not k.startswith("LOOMFLOW_") and k != "VIRTUAL_ENV"}
    env = {
        **base,
        "PATH": os.pathsep.join([*_tool_dirs(), "/usr/local/bin", "/usr/bin", "/bin"]),
        "PYTHONPATH": os.pathsep.join([str(clone / "services"), str(clone / "clients" / "python")]),
        "LOOMFLOW_PORT": str(ports[50051]),
        "LOOMFLOW_METRICS_PORT": str(ports[9464]),
    }
    return Session(clone, env, ports, go_module=clone / "clients" / "go")


def test_runnable_blocks_are_marked_where_readers_type() -> None:
    """The documents whose commands a reader types have runnable blocks (a lost marker fails here)."""
    for doc in ("README.md", "docs/operations-grpcurl.md", "docs/go-client.md"):
        assert BLOCKS[doc], f"{doc} has no <!-- run --> block"
    languages = {b.language for blocks in BLOCKS.values() for b in blocks}
    assert {"bash", "python", "go"} <= languages, languages


@pytest.mark.parametrize("doc", RUNNABLE)
def test_the_document_runs_as_written(doc: str, clone: Path) -> None:
    _required("git")
    session = session_for(clone)
    done: list[Block] = []
    try:
        for block in BLOCKS[doc]:
            session.run(block)
            done.append(block)
    except AssertionError as failure:
        logs = "\n".join(session.close())
        ran = ", ".join(b.where for b in done) or "none"
        raise AssertionError(f"{failure}\n(blocks that ran before: {ran})\n{logs[-6000:]}") from None
    finally:
        session.close()
