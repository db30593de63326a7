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


def sources(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.suffix in (".py", ".pyi") and p.is_file()]


def test_python_stubs_match_the_protos(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "scripts/gen_python.py", str(tmp_path)], cwd=REPO, check=True, capture_output=True)
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in sources(tmp_path)}
    assert fresh, "protoc produced nothing"
    stale = [str(path) for path, content in fresh.items() if (COMMITTED / path).read_bytes() != content]
    assert not stale, f"generated code is stale, run `make gen`: {stale}"
    committed = {p.relative_to(COMMITTED) for p in sources(COMMITTED) if "_pb2" in p.name}
    orphans = sorted(str(p) for p in committed - set(fresh))
    assert not orphans, f"generated files without a .proto: {orphans}"


def test_generated_messages_import_buf_validate_only_from_the_private_vendor_path() -> None:
    assert not (COMMITTED / "buf").exists(), "a top-level `buf` package would collide with other projects"
    offenders = [
        str(p.relative_to(COMMITTED))
        for p in sources(COMMITTED)
        if b"from buf." in p.read_bytes() or b"import buf" in p.read_bytes()
    ]
    assert not offenders, f"generated code imports the top-level `buf` package: {offenders}"


def test_go_lookalike_table_matches_the_server_folding() -> None:
    """clients/go/loomflow/lookalikes_table.go is what scripts/gen_lookalikes.py writes today (issue 19)."""
    spec = importlib.util.spec_from_file_location("gen_lookalikes", REPO / "scripts" / "gen_lookalikes.py")
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    committed = (REPO / "clients" / "go" / "loomflow" / "lookalikes_table.go").read_text()
    assert committed == generator.render(), "the Go look-alike table is stale: run `make gen`"
