"""Generated Python is fresh: regenerating from proto/ gives byte-identical files.

(CI also runs `make gen` and `git diff --exit-code`, which covers the Go code and
the protoset; this test gives the same answer for Python without Go tools.)
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "clients" / "python"


def test_python_stubs_match_the_protos(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(REPO / "proto")) for p in (REPO / "proto").rglob("*.proto"))
    base = [sys.executable, "-m", "grpc_tools.protoc", "-I", "proto", "-I", "third_party/protovalidate"]
    outputs = [f"--python_out={tmp_path}", f"--pyi_out={tmp_path}"]
    subprocess.run(
        [*base, *outputs, f"--grpc_python_out={tmp_path}", f"--mypy_grpc_out={tmp_path}", *protos],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    subprocess.run([*base, *outputs, "buf/validate/validate.proto"], cwd=REPO, check=True, capture_output=True)
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*.py*")}
    assert fresh, "protoc produced nothing"
    stale = [str(path) for path, content in fresh.items() if (COMMITTED / path).read_bytes() != content]
    assert not stale, f"generated code is stale, run `make gen`: {stale}"
    committed = {
        p.relative_to(COMMITTED)
        for p in COMMITTED.rglob("*_pb2*.py*")
        if p.relative_to(COMMITTED).parts[0] in ("loomflow", "buf")
    }
    orphans = sorted(str(p) for p in committed - set(fresh))
    assert not orphans, f"generated files without a .proto: {orphans}"


def test_go_lookalike_table_matches_the_server_folding() -> None:
    """clients/go/loomflow/lookalikes_table.go is what scripts/gen_lookalikes.py writes today (issue 19)."""
    spec = importlib.util.spec_from_file_location("gen_lookalikes", REPO / "scripts" / "gen_lookalikes.py")
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    committed = (REPO / "clients" / "go" / "loomflow" / "lookalikes_table.go").read_text()
    assert committed == generator.render(), "the Go look-alike table is stale: run `make gen`"
