"""What a service package hands the kernel: a servicer and its lifecycle."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from loomflow.kernel import config
from loomflow.kernel.auth import AuthSettings
from loomflow.kernel.security import RefusalHook
from loomflow.kernel.settings import ServerSettings
from loomflow.kernel.transport.inprocess import LocalMethods

T = TypeVar("T")


@dataclass
class HostedService:
    """One gRPC service ready to be added to a server.

    ``accepts_end_users``: whether end-user tokens may call it (the suite's edge);
    every other service accepts only service and operator principals. Hooks run in
    this order: ``on_start`` before serving; ``on_drain`` once the server refuses new calls during a graceful stop;
    ``on_stop`` after in-flight calls finished. ``backend_setting``: what a start-up failure tells
    the operator to check (default: the service's ``dsn`` setting).
    """

    name: str
    full_name: str
    register: Callable[[grpc.aio.Server], None]
    accepts_end_users: bool = False
    # RPCs of this service that end users may call for their own tenant (the rest stay internal).
    end_user_rpcs: frozenset[str] = frozenset()
    # RPCs of this service that accept an operator's ``scope.all_tenants`` (the rest answer INVALID_ARGUMENT).
    all_tenants_rpcs: frozenset[str] = frozenset()
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Called once a graceful stop refuses new calls: end long-lived streams here so
    # clients move to another replica instead of holding the drain open until the grace ends.
    on_drain: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Called (synchronously, must not block) for each call refused as UNAUTHENTICATED or
    # PERMISSION_DENIED, after the kernel logged it (kernel/security.py), e.g. to record them for the tenant.
    on_refusal: RefusalHook | None = None
    backend_setting: str = ""

    def startup_setting(self) -> str:
        """The setting that chose this service's backend, named when the service cannot start."""
        return self.backend_setting or f"LOOMFLOW_{self.name.upper()}_DSN (--{self.name}-dsn)"


@dataclass
class ServiceContext:
    """What a service's ``build`` gets: the server settings and a way to load its own section."""

    server: ServerSettings
    auth: AuthSettings
    args: argparse.Namespace | None = None
    env: Mapping[str, str] | None = None
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The server hosting this service; its ``port`` is known once started (a
    # service's dependencies may default to the same process).
    bound_port_source: Any = None

    @property
    def bound_port(self) -> int:
        return int(getattr(self.bound_port_source, "bound_port", 0))

    @property
    def local_methods(self) -> LocalMethods | None:
        """The wrapped handlers of the services in this process (known once the server was built)."""
        found = getattr(self.bound_port_source, "local_methods", None)
        return found if isinstance(found, LocalMethods) else None

    def section(self, name: str, cls: type[T]) -> T:
        return config.load(name, cls, self.args, self.env, **dict(self.overrides.get(name, {})))
