"""The five services and how one process hosts any subset of them.

Each service package has a ``service`` module exposing ``SECTION`` (its settings
prefix), ``Settings`` (a dataclass of :func:`loomflow.kernel.config.option`
fields) and ``build(ctx) -> HostedService``.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from loomflow import retention
from loomflow.kernel import config
from loomflow.kernel.auth import AuthSettings
from loomflow.kernel.hosting import HostedService, ServiceContext
from loomflow.kernel.server import Server
from loomflow.kernel.settings import ServerSettings

SERVICE_NAMES = ("memory", "budget", "policy", "audit", "agent")


@dataclass(frozen=True)
class SuiteSettings(ServerSettings):
    """The server section as the suite documents it: every service hosted unless ``services`` says otherwise,
    the audit log among the embedded state, the Agent (the only service end users call) in the limits' help."""

    services: str = config.option(",".join(SERVICE_NAMES), "comma-separated services this process hosts")
    data_dir: str = config.option(ServerSettings.data_dir, "folder for embedded state (SQLite, audit log)")
    rate_limit_per_user: float = config.option(
        ServerSettings.rate_limit_per_user,
        "calls per second one tenant may make to the Agent, sustained (token bucket; 0: no limit)",
    )
    max_inflight_per_user: int = config.option(
        ServerSettings.max_inflight_per_user,
        "calls of one tenant the Agent runs at the same time, at most (0: no limit)",
    )


def service_module(name: str) -> ModuleType:
    if name not in SERVICE_NAMES:
        raise config.ConfigError(f"unknown service {name!r}; choose from {', '.join(SERVICE_NAMES)}")
    return importlib.import_module(f"loomflow.{name}.service")


def sections() -> list[tuple[str, type[Any]]]:
    """Every settings section, in CLI order: server, auth, retention, then one per service."""
    found: list[tuple[str, type[Any]]] = [("", SuiteSettings), ("auth", AuthSettings)]
    found.append((retention.SECTION, retention.Settings))
    for name in SERVICE_NAMES:
        module = service_module(name)
        found.append((module.SECTION, module.Settings))
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for section, cls in sections():
        config.add_arguments(parser, section, cls)


def build_server(
    args: argparse.Namespace | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Server:
    """Assembles a server for the configured services. ``overrides`` maps a section
    ("" for the server) to field values, which beat flags and the environment."""
    extra = dict(overrides or {})
    server_settings = config.load("", SuiteSettings, args, env, **dict(extra.get("", {})))
    auth = config.load("auth", AuthSettings, args, env, **dict(extra.get("auth", {})))
    ctx = ServiceContext(server=server_settings, auth=auth, args=args, env=env, overrides=extra)
    hosted: list[HostedService] = [service_module(n).build(ctx) for n in server_settings.service_names()]
    server = Server(server_settings, auth, hosted)
    ctx.bound_port_source = server  # the Agent resolves "same process" addresses after binding
    return server
