"""The ``loomflow`` command: ``serve`` runs services; other subcommands operate them."""

from __future__ import annotations

import loomflow.kernel.grpc_runtime  # noqa: F401  # first: gRPC core reads its settings when grpc is imported

# isort: split
import argparse
import sys
from collections.abc import Callable, Sequence

from loomflow import suite
from loomflow.agent.commands import add_demo as add_demo_subcommand
from loomflow.agent.commands import add_token as add_token_subcommand
from loomflow.audit.cli import add_subcommand as add_audit_subcommand
from loomflow.kernel import config, eventloop
from loomflow.kernel.settings import ServerSettings
from loomflow.kernel.telemetry import configure_logging
from loomflow.memory.cli import add_subcommand as add_memory_subcommand


def _serve(args: argparse.Namespace) -> int:
    settings = config.load("", ServerSettings, args)
    configure_logging(settings.log_level, settings.log_format)
    server = suite.build_server(args)
    eventloop.run(server.run_until_signal(), settings.event_loop)
    return 0


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "serve",
        help="run services (all five in one process by default)",
        description="Run loomflow services. Every flag also reads a LOOMFLOW_* environment variable.",
    )
    suite.add_arguments(parser)
    parser.set_defaults(handler=_serve)


# Subcommand registrars: each adds its parser and sets `handler`.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_serve,
    add_audit_subcommand,
    add_token_subcommand,
    add_demo_subcommand,
    add_memory_subcommand,
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loomflow", description="Multi-tenant services for LLM agents.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
    except config.ConfigError as exc:
        print(f"loomflow: configuration error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
