"""What a no-NUL rule on a string field costs in protovalidate 2.1, by the way it is written (issue 19).

Every string field of every request refuses U+0000. protovalidate can say so with a
builtin rule (``string.not_contains``, ``string.pattern``) or with CEL (a field rule,
or a shared predefined rule extending ``StringRules``). This compiles one message per
variant (five string fields each, like a typical request), validates it with one
``protovalidate.Validator`` and reports µs per validation, best of several rounds.

    python -m bench string_rules [--rounds 5] [--calls 20000]

Writes bench/results/string_rules.json and .png.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
import types
from importlib import metadata
from pathlib import Path
from typing import Any

import protovalidate

from bench.harness import REPO, plot_path, write_results

FIELDS = "abcde"
NUL_PATTERN = '"^[^\\\\x00]*$"'
CEL = '{id: "no_nul" message: "no NUL" expression: "!this.contains(\'\\\\u0000\')"}'
VARIANTS = {
    "no rule": "",
    "max_len only": "[(buf.validate.field).string.max_len = 256]",
    "not_contains": '[(buf.validate.field).string.not_contains = "\\000"]',
    "pattern": f"[(buf.validate.field).string.pattern = {NUL_PATTERN}]",
    "max_len + pattern": f"[(buf.validate.field).string = {{max_len: 256, pattern: {NUL_PATTERN}}}]",
    "field CEL": f"[(buf.validate.field).cel = {CEL}]",
    "predefined CEL": "[(buf.validate.field).string.(storable) = true]",
}
PREDEFINED = """syntax = "proto2";
package nulbench;
import "buf/validate/validate.proto";
extend buf.validate.StringRules {
  optional bool storable = 80191 [(buf.validate.predefined).cel = {
    id: "string.storable"
    expression: "rule && this.contains('\\\\u0000') ? 'must not contain NUL' : ''"
  }];
}
"""


def compile_variants(folder: Path) -> Any:
    proto = folder / "nulbench"
    proto.mkdir()
    (proto / "rules.proto").write_text(PREDEFINED)
    body = [
        'syntax = "proto3";',
        "package nulbench;",
        'import "buf/validate/validate.proto";',
        'import "nulbench/rules.proto";',
    ]
    for index, rule in enumerate(VARIANTS.values()):
        fields = " ".join(f"string {name} = {n} {rule};" for n, name in enumerate(FIELDS, start=1))
        body.append(f"message V{index} {{ {fields} }}")
    (proto / "variants.proto").write_text("\n".join(body) + "\n")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{folder}", f"-I{REPO / 'third_party' / 'protovalidate'}",
         f"--python_out={folder}", "nulbench/rules.proto", "nulbench/variants.proto"],
        check=True,
    )  # fmt: skip
    for generated in proto.glob("*_pb2.py"):  # validate.proto ships vendored, as scripts/gen_python.py makes it
        text = generated.read_text().replace("from buf.validate import ", "from loomflow._vendor.buf.validate import ")
        generated.write_text(text)
    # The generated modules import each other as ``nulbench.*``: a package whose folder is the temporary
    # output, so nothing is added to sys.path.
    package = types.ModuleType("nulbench")
    package.__path__ = [str(proto)]
    sys.modules["nulbench"] = package
    return importlib.import_module("nulbench.variants_pb2")


def measure(module: Any, rounds: int, calls: int) -> dict[str, float]:
    validator = protovalidate.Validator()
    values = {"a": "session-42", "b": "x" * 200, "c": "tool_call", "d": "agent", "e": "run-1"}
    timings: dict[str, float] = {}
    for index, name in enumerate(VARIANTS):
        cls = getattr(module, f"V{index}")
        message = cls(**values)
        validator.validate(message)
        if name not in ("no rule", "max_len only"):
            try:
                validator.validate(cls(a="a\x00b"))
            except protovalidate.ValidationError:
                pass
            else:
                raise AssertionError(f"{name} let a NUL through")
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(calls):
                validator.validate(message)
            best = min(best, (time.perf_counter() - started) / calls * 1e6)
        timings[name] = round(best, 2)
    return timings


def plot(timings: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(list(timings), list(timings.values()), color="#4C72B0")
    ax.set_xlabel("µs per validation of 5 string fields (best round)")
    ax.set_title("protovalidate 2.1: cost of a no-NUL rule, by how it is written")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        timings = measure(compile_variants(Path(folder)), args.rounds, args.calls)
    for name, micros in timings.items():
        print(f"{name:20s} {micros:8.2f} µs")
    document = {
        "protovalidate": metadata.version("protovalidate"),
        "fields_per_message": len(FIELDS),
        "micros_per_validation": timings,
    }
    write_results("string_rules", document)  # with the machine facts and the command, like every benchmark
    plot(timings, plot_path("string_rules"))
    return 0
