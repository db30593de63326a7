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
from loomflow.audit import service as audit_service
from loomflow.audit.cli import add_subcommand as add_audit_subcommand
from loomflow.audit.service import PUBLIC_KEY_FILE
from loomflow.kernel import config, devmode, eventloop
from loomflow.kernel.auth import AuthSettings
from loomflow.kernel.hosting import ServiceContext
from loomflow.kernel.settings import ServerSettings
from loomflow.kernel.telemetry import configure_logging
from loomflow.memory.cli import add_subcommand as add_memory_subcommand
from loomflow.migrate import add_subcommand as add_migrate_subcommand
from loomflow.usage_report import add_subcommand as add_usage_subcommand


def _serve(args: argparse.Namespace) -> int:
    settings = config.load("", ServerSettings, args)
    configure_logging(
        settings.log_level, settings.log_format, settings.log_max_line_chars, settings.log_repeats_per_minute
    )
    server = suite.build_server(args)
    guide = devmode_guide(args, settings) if settings.insecure else None
    eventloop.run(server.run_until_signal(guide), settings.event_loop)
    return 0


def devmode_guide(args: argparse.Namespace, settings: ServerSettings) -> Callable[[int], None]:
    """What `make serve` prints once serving: a token that works, and how to verify its audit log."""

    def show(port: int) -> None:
        program = devmode.program()
        data_dir = "" if settings.data_dir == ServerSettings.data_dir else f" --data-dir {settings.data_dir}"
        lines = [
            f"loomflow: serving {settings.services} on {settings.host}:{port} in insecure development mode",
            "  calls without a token act as an operator; a user token this server accepts (bound to alice):",
            f"    export ALICE_TOKEN=$({program} token alice{data_dir})",
        ]
        folder = audit_service.file_log_folder(ServiceContext(server=settings, auth=AuthSettings(), args=args))
        if "audit" in settings.service_names() and folder is not None:
            lines += [
                "  verify its audit log offline (public development keys; the checkpoint key is kept beside the log):",
                f"    {program} audit verify {folder} --insecure-dev-key --public-key {folder / PUBLIC_KEY_FILE}",
            ]
        print("\n".join(lines), file=sys.stderr, flush=True)

    return show


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
    add_migrate_subcommand,
    add_usage_subcommand,
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
