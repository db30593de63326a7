"""The benchmark runner: ``python -m bench <name> [options]``, from the repository's root.

    python -m bench                          # lists the benchmarks
    python -m bench noisy_neighbour --help   # one benchmark's options
    python -m bench noisy_neighbour --seconds 10

Every benchmark is a module with a ``main()`` that reads its options from ``sys.argv``, writes
``bench/results/<name>.json`` (plus a PNG) through :mod:`bench.harness`, and returns its exit code:
1 when a target was missed. The runner does the set-up they share: gRPC's runtime settings before
``grpc`` is imported, the command line recorded in the results, and the exit code.
"""

from __future__ import annotations

import loomflow.kernel.grpc_runtime  # noqa: F401  # before grpc: gRPC core reads its settings on import

# isort: split
import asyncio
import importlib
import inspect
import sys
from collections.abc import Sequence

from bench import harness

BENCHMARKS = {
    "agent_turn": "bench.agent_turn",
    "audit_append": "bench.audit_append",
    "budget_ledger": "bench.budget_ledger",
    "faults": "bench.faults",
    "ghz": "bench.ghz.run",
    "memory_context": "bench.memory_context",
    "memory_recall": "bench.memory_recall",
    "multi_tenant": "bench.multi_tenant",
    "noisy_neighbour": "bench.noisy_neighbour",
    "policy_check": "bench.policy_check",
    "race": "bench.race.run",
    "recall_quality": "bench.recall_quality",
    "sqlite_writes": "bench.sqlite_writes",
    "string_rules": "bench.string_rules",
    "tool_worker": "bench.tool_worker",
    "tracing_overhead": "bench.tracing_overhead",
    "transport": "bench.transport",
}
"""Benchmark name → module. tests/test_bench_runner.py checks every bench module with a main is here."""


def usage() -> str:
    lines = ["usage: python -m bench <name> [options]   (python -m bench <name> --help for its options)", ""]
    for name, module in BENCHMARKS.items():
        doc = (importlib.import_module(module).__doc__ or "").strip().splitlines()
        lines.append(f"  {name:<18} {doc[0] if doc else ''}")
    return "\n".join(lines)


def run(name: str, args: Sequence[str]) -> int:
    """Runs one benchmark with its command-line ``args``; returns its exit code."""
    module = importlib.import_module(BENCHMARKS[name])
    harness.set_command(name, args)
    sys.argv = [f"python -m bench {name}", *args]
    result = module.main()
    if inspect.iscoroutine(result):  # a few benchmarks are one coroutine from the start
        result = asyncio.run(result)
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, *rest = args
    if name not in BENCHMARKS:
        print(f"python -m bench: no benchmark {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return run(name, rest)


if __name__ == "__main__":
    sys.exit(main())
