"""Builds, runs and drains a grpc.aio server hosting any set of loomflow services.

One place assembles every server the same way: the kernel interceptor, health
(per service and overall), reflection (so ``grpcurl list`` works), metrics, and
graceful shutdown (health NOT_SERVING, then ``stop(grace)``, then each
service's ``on_stop``).
"""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from loomflow.kernel import heap
from loomflow.kernel.auth import AuthSettings, TokenVerifier
from loomflow.kernel.hosting import HostedService
from loomflow.kernel.interceptor import KernelInterceptor, WrappingRegistrar
from loomflow.kernel.ratelimit import TenantLimiter
from loomflow.kernel.security import RefusalRecorder
from loomflow.kernel.settings import ServerSettings
from loomflow.kernel.telemetry import configure_tenant_labels, setup_metrics
from loomflow.kernel.tracing import flush_spans, setup_tracing

log = logging.getLogger("loomflow.server")


class Server:
    """A running (or ready-to-run) server. ``port`` is the bound port after :meth:`start`."""

    def __init__(self, settings: ServerSettings, auth: AuthSettings, services: list[HostedService]) -> None:
        self.settings = settings
        self.services = services
        self.port = 0
        self.bound_port = 0
        self._auth = auth
        self._stopping = False
        if settings.insecure:
            log.warning("INSECURE MODE: unauthenticated callers act as operators; never run this in production")
            self._verifier: TokenVerifier | None = None
        else:
            self._verifier = TokenVerifier(auth)  # fails fast on a missing key

    def _build(self) -> None:
        # grpc.aio objects bind to the running event loop, so they are made in start().
        settings, services = self.settings, self.services
        if settings.tracing:
            # Before services open their channels: it wraps the channel factories.
            names = settings.service_names()
            setup_tracing("loomflow" if len(names) != 1 else f"loomflow-{names[0]}", settings.otlp_endpoint)
        self._health = health.aio.HealthServicer()
        configure_tenant_labels(settings.metrics_max_tenants)
        interceptor = KernelInterceptor(
            self._verifier,
            {s.full_name for s in services if s.accepts_end_users}
            | {f"{s.full_name}/{rpc}" for s in services for rpc in s.end_user_rpcs},
            traced=settings.tracing,
            limiter=TenantLimiter(
                settings.rate_limit_per_user,
                settings.rate_burst,
                settings.max_inflight_per_user,
                max_tenants=settings.rate_limit_max_tenants,
            ),
            refusals=RefusalRecorder({s.full_name: s.on_refusal for s in services if s.on_refusal is not None}),
        )
        limit = settings.max_message_bytes
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
            ],
        )
        registrar = WrappingRegistrar(self._server, interceptor)
        for service in services:
            service.register(registrar)  # type: ignore[arg-type]  # duck-types the two methods generated code calls
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        names = [s.full_name for s in services] + [health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, self._server)

    async def start(self) -> int:
        """Binds, runs every service's ``on_start`` and reports SERVING. Returns the port."""
        self._build()
        host = self.settings.host
        address = f"[{host}]:{self.settings.port}" if ":" in host else f"{host}:{self.settings.port}"
        port = self._server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"cannot bind {address}")
        self.bound_port = port  # known to on_start hooks; `port` is set once serving
        setup_metrics("loomflow", self.settings.metrics_port, host)
        for service in self.services:
            for hook in service.on_start:
                await hook()
        await self._server.start()
        self.port = port
        for service in self.services:
            await self._health.set(service.full_name, health_pb2.HealthCheckResponse.SERVING)
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving",
            extra={
                "address": f"{host}:{port}",
                "services": [s.name for s in self.services],
                "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],  # uvloop or asyncio
            },
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Drains: NOT_SERVING first (probes and balancers stop sending), then in-flight calls finish."""
        if self._stopping:
            return
        self._stopping = True
        await self._health.enter_graceful_shutdown()
        if self.settings.shutdown_delay > 0:
            await asyncio.sleep(self.settings.shutdown_delay)
        stopping = asyncio.ensure_future(self._server.stop(self.settings.shutdown_grace if grace is None else grace))
        await asyncio.sleep(0)  # the server refuses new calls from here on
        for service in self.services:
            for hook in service.on_drain:
                try:
                    await hook()
                except Exception:
                    log.exception("error draining %s", service.name)
        await stopping
        for service in reversed(self.services):
            for hook in service.on_stop:
                try:
                    await hook()
                except Exception:
                    log.exception("error stopping %s", service.name)
        if self.settings.tracing:
            flush_spans()  # the OTLP batch still holds the last spans
        log.info("stopped")

    async def run_until_signal(self) -> None:
        """Serves until SIGTERM or SIGINT, then drains gracefully."""
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        # Before start(): the port accepts connections during start(), and a SIGTERM that arrived
        # before the handlers would kill the process without a drain.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested.set)
        try:
            await self.start()
            with heap.settled():
                await stop_requested.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        log.info("draining", extra={"grace_seconds": self.settings.shutdown_grace})
        await self.stop()
