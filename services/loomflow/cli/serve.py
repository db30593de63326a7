"""``loomflow serve``: runs the configured services in one process until SIGTERM."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from loomflow import suite, workers
from loomflow.audit import service as audit_service
from loomflow.audit.service import PUBLIC_KEY_FILE
from loomflow.kernel import config, devmode, eventloop
from loomflow.kernel.auth import AuthSettings
from loomflow.kernel.hosting import ServiceContext
from loomflow.kernel.settings import ServerSettings
from loomflow.kernel.telemetry import configure_logging


def _serve(args: argparse.Namespace) -> int:
    settings = config.load("", suite.SuiteSettings, args)
    configure_logging(
        settings.log_level, settings.log_format, settings.log_max_line_chars, settings.log_repeats_per_minute
    )
    index = workers.worker_index()
    if settings.workers > 1 and index is None:
        return workers.supervise(args, settings, getattr(args, "argv", ["serve"]))
    server = suite.build_server(args)
    guide = devmode_guide(args, settings) if settings.insecure and not index else None  # said once, not per worker
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


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "serve",
        help="run services (all five in one process by default)",
        description="Run loomflow services. Every flag also reads a LOOMFLOW_* environment variable.",
    )
    suite.add_arguments(parser)
    parser.set_defaults(handler=_serve)
