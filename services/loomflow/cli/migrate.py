"""``loomflow migrate``: applies every configured service's database migrations, then exits.

Run it (a Kubernetes Job) as the schema owner before rolling out a release; the services then run with
``LOOMFLOW_MIGRATE=false`` and need no DDL rights. It reads the same flags and LOOMFLOW_* variables as
``serve``. Each service module declares its migrations (``MIGRATIONS``, a
:class:`loomflow.kernel.backends.migrations.Declared`: the setting naming its database, and its backend's
own start-up code with migrations on, so there is one copy of the DDL); this command runs what is declared.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from loomflow import suite
from loomflow.kernel import config
from loomflow.kernel.auth import AuthSettings
from loomflow.kernel.backends import dsn as dsns
from loomflow.kernel.backends import migrations
from loomflow.kernel.hosting import ServiceContext


def migrate(args: argparse.Namespace) -> int:
    server = config.load("", suite.SuiteSettings, args)
    ctx = ServiceContext(server=server, auth=config.load("auth", AuthSettings, args), args=args)
    for name in server.service_names():
        module = suite.service_module(name)
        declared: migrations.Declared | None = getattr(module, "MIGRATIONS", None)
        if declared is None:
            print(f"{name}: nothing to migrate (no database)")
            continue
        env = f"{config.ENV_PREFIX}{module.SECTION.upper()}_{declared.setting.upper()}"
        try:
            applied = asyncio.run(migrations.apply_declared(declared, ctx.section(module.SECTION, module.Settings)))
        except Exception as exc:  # noqa: BLE001  # one line naming the setting, whatever the driver raised
            message = dsns.redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"loomflow migrate: {name} ({env}): {message}", file=sys.stderr)
            return 2
        if applied:
            print(f"{name}: schema current ({env})")
        else:
            print(f"{name}: nothing to migrate ({env} is not Postgres; embedded stores self-migrate)")
    return 0


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "migrate",
        help="apply the database migrations of the configured services, then exit (a Kubernetes Job)",
        description="Apply database migrations with the settings `serve` reads (flags and LOOMFLOW_* variables).",
    )
    suite.add_arguments(parser)
    parser.set_defaults(handler=migrate)
