"""``loomflow memory reembed``: rewrite stored vectors with the configured embedder, online and resumably.

Reads the same settings as ``loomflow serve`` (``--memory-dsn``, ``--memory-embedder``
and the other ``--memory-*`` flags, or their LOOMFLOW_* variables), so it
re-embeds with the embedder the servers use. Servers keep serving meanwhile:
each page commits on its own and makes their caches reload. Progress, the
(tenant, seq) reached, is saved after each page to ``--progress-file``
(default ``<data-dir>/memory-reembed-<embedder>.json``); run the same command
again to continue after an interruption.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from loomflow.kernel import config
from loomflow.kernel.settings import ServerSettings
from loomflow.memory import service
from loomflow.memory.recall.factory import open_embedder
from loomflow.memory.recall.reembed import PAGE, Progress, Reembeddable, reembed
from loomflow.memory.store import open_store
from loomflow.suite import SuiteSettings


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("memory", help="memory store tools", description=__doc__)
    commands = parser.add_subparsers(dest="memory_command", required=True)
    run = commands.add_parser(
        "reembed",
        help="re-embed stored episodes with the configured embedder (online, resumable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scope = run.add_mutually_exclusive_group(required=True)
    scope.add_argument("--tenant", help="the tenant key to re-embed (as stored: tenant_key of the scope)")
    scope.add_argument("--all-tenants", action="store_true", help="every tenant, in key order")
    run.add_argument("--progress-file", type=Path, help="where the position is saved (default under --data-dir)")
    run.add_argument("--page", type=int, default=PAGE, help=f"episodes per committed page (default {PAGE})")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    config.add_arguments(run, "", SuiteSettings)
    config.add_arguments(run, service.SECTION, service.Settings)
    run.set_defaults(handler=_reembed)


def _show(progress: Progress) -> None:
    state = "done" if progress.finished else f"tenant {progress.tenant!r} after seq {progress.after_seq}"
    print(
        f"reembed[{progress.embedder}]: {progress.tenants} tenants finished, "
        f"{progress.episodes} episodes re-embedded; {state}",
        file=sys.stderr,
    )


def _reembed(args: argparse.Namespace) -> int:
    server = config.load("", SuiteSettings, args)
    settings = config.load(service.SECTION, service.Settings, args)
    if args.page < 1:
        raise config.ConfigError("--page must be >= 1")
    return asyncio.run(_run(args, server, settings))


async def _run(args: argparse.Namespace, server: ServerSettings, settings: service.Settings) -> int:
    embedder = open_embedder(service.embedder_options(settings))
    await embedder.start()
    store = open_store(settings.dsn, server.data_dir, service.store_options(settings), embedder)
    await store.start()
    try:
        if not isinstance(store, Reembeddable):  # every backend is; a new one must be too
            raise config.ConfigError(f"{type(store).__name__} cannot re-embed")
        progress_file = args.progress_file or Path(server.data_dir) / f"memory-reembed-{embedder.name}.json"
        report = (lambda _: None) if args.quiet else _show
        await reembed(store, embedder, progress_file, args.tenant, args.page, report)
    finally:
        await store.close()
        await embedder.close()
    return 0
