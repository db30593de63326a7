"""The ``loomflow`` command: ``serve`` runs services; the other subcommands operate them.

One module per subcommand (``serve``, ``token``, ``demo``, ``audit``, ``memory``,
``migrate``, ``forget-user``/``export-user``, ``usage``), each with ``add_subcommand``, which adds its parser and sets
``handler``. The service packages keep their domain logic; these modules compose it.
"""

from __future__ import annotations

import loomflow.kernel.grpc_runtime  # noqa: F401  # first: gRPC core reads its settings when grpc is imported

# isort: split
import argparse
import sys
from collections.abc import Callable, Sequence

from loomflow.cli import audit, demo, erasure, memory, migrate, serve, token, usage
from loomflow.kernel import config

# Subcommand registrars, in the order `loomflow --help` lists them.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    serve.add_subcommand,
    audit.add_subcommand,
    token.add_subcommand,
    demo.add_subcommand,
    memory.add_subcommand,
    migrate.add_subcommand,
    erasure.add_subcommands,
    usage.add_subcommand,
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loomflow", description="Multi-tenant services for LLM agents.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `serve --workers` starts its workers with them
    try:
        result: int = args.handler(args)
    except config.ConfigError as exc:
        print(f"loomflow: configuration error: {exc}", file=sys.stderr)
        return 2
    return result
