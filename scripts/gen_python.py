"""Generates the Python half of the contract from proto/ into a folder (``clients/python`` by default).

protoc names imports after the proto path, so the messages would import ``buf.validate`` as a
top-level package, which would collide with any other project that ships one. The vendored
``buf/validate/validate.proto`` is generated under ``loomflow/_vendor/`` instead and the imports
of the generated modules are rewritten to point there. The descriptor keeps its proto name
(``buf/validate/validate.proto``), so protovalidate still reads the rules from the options.

Used by scripts/gen.sh and by tests/test_generated_code.py (which regenerates into a temp folder
and compares), so both produce the same bytes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENDOR = Path("loomflow", "_vendor")
VALIDATE_IMPORT = re.compile(rb"^from buf\.validate import ", re.M)
PRIVATE_IMPORT = b"from loomflow._vendor.buf.validate import "


def protoc(*arguments: str) -> None:
    base = [sys.executable, "-m", "grpc_tools.protoc", "-I", "proto", "-I", "third_party/protovalidate"]
    # protoc finds the mypy-protobuf plugins on PATH: the ones beside this interpreter.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    subprocess.run([*base, *arguments], cwd=REPO, check=True, env={**os.environ, "PATH": path})


def generate(out: Path) -> None:
    out = out.resolve()
    protos = sorted(p.relative_to(REPO / "proto").as_posix() for p in (REPO / "proto").rglob("*.proto"))
    (out / "loomflow" / "v1").mkdir(parents=True, exist_ok=True)
    protoc(f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", f"--mypy_grpc_out={out}", *protos)
    with tempfile.TemporaryDirectory() as scratch:
        protoc(f"--python_out={scratch}", f"--pyi_out={scratch}", "buf/validate/validate.proto")
        target = out / VENDOR / "buf" / "validate"
        target.mkdir(parents=True, exist_ok=True)
        for generated in (Path(scratch) / "buf" / "validate").iterdir():
            (target / generated.name).write_bytes(generated.read_bytes())
    for module in (out / "loomflow" / "v1").glob("*_pb2*.py*"):
        text = module.read_bytes()
        rewritten = VALIDATE_IMPORT.sub(PRIVATE_IMPORT, text)
        if rewritten != text:
            module.write_bytes(rewritten)
    # Regular packages, so type checkers and wheels see them; `loomflow/` itself stays a
    # namespace package shared with services/.
    for package in ("loomflow/v1", VENDOR, VENDOR / "buf", VENDOR / "buf" / "validate"):
        (out / package / "__init__.py").touch()
    (out / "loomflow" / "v1" / "py.typed").touch()


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "clients" / "python")
