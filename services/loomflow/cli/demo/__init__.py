"""``loomflow demo``: the five services in one process and a conversation for two tenants (see :mod:`.story`)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from loomflow.cli.demo.story import run_demo  # the client and the suite: loaded for the demo only

    return asyncio.run(run_demo(keep=args.keep, data_dir=args.data_dir))


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the five services in one process and a conversation for two tenants",
        description=(
            "Starts all five services in one process on embedded defaults in a temporary folder, in "
            "secure mode with a freshly generated secret, then runs a conversation for alice and bob "
            "through the Python client: memory recall, a tool call needing approval, a budget stop and "
            "the audit verification."
        ),
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder and its keys afterwards")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="keep state and keys in this folder (reused by the next run) and print how to verify its audit log",
    )
    parser.set_defaults(handler=_demo)
