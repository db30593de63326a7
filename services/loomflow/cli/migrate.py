"""``loomflow migrate``: applies every configured service's database migrations, then exits.

Run it (a Kubernetes Job) as the schema owner before rolling out a release; the services then run with
``LOOMFLOW_MIGRATE=false`` and need no DDL rights. It reads the same flags and LOOMFLOW_* variables as
``serve`` and migrates each backend through the backend's own start-up code, so there is one copy of the DDL.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from loomflow import suite
from loomflow.kernel import config
from loomflow.kernel.auth import AuthSettings
from loomflow.kernel.backends import dsn as dsns
from loomflow.kernel.hosting import ServiceContext


async def _memory(ctx: ServiceContext) -> None:
    from loomflow.memory import service
    from loomflow.memory.recall.factory import open_embedder
    from loomflow.memory.store import open_store

    settings = ctx.section(service.SECTION, service.Settings)
    options = dataclasses.replace(service.store_options(settings), migrate=True)
    store = open_store(settings.dsn, ctx.server.data_dir, options, open_embedder(service.embedder_options(settings)))
    await store.start()  # migrations, and the pgvector column when the extension can be created
    await store.close()


async def _budget(ctx: ServiceContext) -> None:
    from loomflow.budget import service
    from loomflow.budget.ledger.postgres import PostgresLedger

    settings = ctx.section(service.SECTION, service.Settings)
    ledger = PostgresLedger(settings.dsn, pool_size=1)
    try:
        await ledger.migrate()
    finally:
        await ledger.close()


async def _policy(ctx: ServiceContext) -> None:
    from loomflow.policy import service
    from loomflow.policy.store.postgres import PostgresStore

    store = PostgresStore(ctx.section(service.SECTION, service.Settings).dsn, pool_size=2)
    await store.start()
    await store.close()


async def _audit(ctx: ServiceContext) -> None:
    from loomflow.audit import service
    from loomflow.audit.sink.postgres import PostgresSink

    sink = PostgresSink(ctx.section(service.SECTION, service.Settings).dsn, pool_size=1)
    await sink.open()
    await sink.close()


async def _agent(ctx: ServiceContext) -> None:
    from loomflow.agent import service
    from loomflow.agent.store.postgres import PostgresAgentStore

    store = PostgresAgentStore(ctx.section(service.SECTION, service.Settings).store_dsn, pool_size=1)
    await store.start()
    await store.close()


# service → (its DSN setting, the one that names its Postgres database; how to migrate it)
MIGRATORS: dict[str, tuple[str, Callable[[ServiceContext], Coroutine[Any, Any, None]]]] = {
    "memory": ("dsn", _memory),
    "budget": ("dsn", _budget),
    "policy": ("dsn", _policy),
    "audit": ("dsn", _audit),
    "agent": ("store_dsn", _agent),
}


def _dsn_env(name: str, field: str) -> str:
    return f"LOOMFLOW_{name.upper()}_{field.upper()}"


def migrate(args: argparse.Namespace) -> int:
    server = config.load("", suite.SuiteSettings, args)
    ctx = ServiceContext(server=server, auth=config.load("auth", AuthSettings, args), args=args)
    for name in server.service_names():
        module = suite.service_module(name)
        field, run = MIGRATORS[name]
        dsn = getattr(ctx.section(module.SECTION, module.Settings), field)
        if not dsns.parse(dsn).is_postgres:
            print(f"{name}: nothing to migrate ({_dsn_env(name, field)} is not Postgres; embedded stores self-migrate)")
            continue
        try:
            asyncio.run(run(ctx))
        except Exception as exc:  # noqa: BLE001  # one line naming the setting, whatever the driver raised
            message = dsns.redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"loomflow migrate: {name} ({_dsn_env(name, field)}): {message}", file=sys.stderr)
            return 2
        print(f"{name}: schema current ({_dsn_env(name, field)})")
    return 0


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "migrate",
        help="apply the database migrations of the configured services, then exit (a Kubernetes Job)",
        description="Apply database migrations with the settings `serve` reads (flags and LOOMFLOW_* variables).",
    )
    suite.add_arguments(parser)
    parser.set_defaults(handler=migrate)
