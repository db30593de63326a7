"""Builds, runs and drains a grpc.aio server hosting any set of loomflow services.

One place assembles every server the same way: the kernel interceptor, health
(per service and overall), reflection (so ``grpcurl list`` works), metrics, and
graceful shutdown (health NOT_SERVING, then ``stop(grace)``, then each
service's ``on_stop``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from loomflow.kernel import devmode, heap, reflection
from loomflow.kernel.auth import AuthSettings
from loomflow.kernel.backends.dsn import redact
from loomflow.kernel.config import ConfigError
from loomflow.kernel.hosting import HostedService
from loomflow.kernel.identity import ServiceIdentities, Verifier, build_verifier
from loomflow.kernel.interceptor import KernelInterceptor, WrappingRegistrar
from loomflow.kernel.ratelimit import TenantLimiter
from loomflow.kernel.security import RefusalRecorder
from loomflow.kernel.settings import ServerSettings
from loomflow.kernel.telemetry import configure_tenant_labels, setup_metrics
from loomflow.kernel.tls import server_credentials
from loomflow.kernel.tracing import flush_spans, server_interceptors, setup_tracing
from loomflow.kernel.transport import mux_server
from loomflow.kernel.transport.inprocess import LocalMethods

log = logging.getLogger("loomflow.server")


def port_in_use(host: str, port: int, shared: bool = False) -> bool:
    """Whether another socket listens on ``host:port``: asked before gRPC binds, whose own failure
    also prints a gRPC core log line, where a newcomer should read one line naming the setting.
    ``shared``: sibling workers listening with SO_REUSEPORT are no conflict."""
    if port == 0:
        return False
    try:
        family, kind, proto, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds: TIME_WAIT is no conflict
            if shared:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            probe.bind(where)
    except OSError as exc:
        return exc.errno == errno.EADDRINUSE
    return False


def startup_failure(service: HostedService, exc: BaseException) -> str:
    """One line for a service that could not start: what failed, and the setting that chose its backend."""
    reason = " ".join(redact(str(exc)).split()) or type(exc).__name__  # a driver's error may quote the DSN
    return f"the {service.name} service could not start: {reason}: check {service.startup_setting()}"


def process_name(settings: ServerSettings) -> str:
    """The default ``service.name`` of traces and ``target_info``: ``loomflow-<service>`` for a pod of one
    service, ``loomflow`` for a process hosting several (its ``services`` label lists them)."""
    names = settings.service_names()
    return f"loomflow-{names[0]}" if len(names) == 1 else "loomflow"


def reuseport(settings: ServerSettings) -> int:
    return 1 if settings.workers > 1 else 0


def server_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """Channel arguments of every loomflow server."""
    # One process per port unless --workers asked for several sharing it (SO_REUSEPORT: the kernel
    # spreads connections); otherwise a second server on the same port must fail, not share it.
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", reuseport(settings)),
    ]
    if settings.max_connection_age_ms > 0:
        # A connection that lives forever pins a client to one replica: ageing it out makes the client
        # re-resolve and spread its calls over replicas (and pick up rotated certificates).
        options += [
            ("grpc.max_connection_age_ms", settings.max_connection_age_ms),
            ("grpc.max_connection_age_grace_ms", settings.max_connection_age_grace_ms),
        ]
    return options


class Server:
    """A running (or ready-to-run) server. ``port`` is the bound port after :meth:`start`."""

    def __init__(self, settings: ServerSettings, auth: AuthSettings, services: list[HostedService]) -> None:
        self.settings = settings
        self.services = services
        self.port = 0
        self.bound_port = 0
        self._stopping = False
        # Every wrapped handler, by method: a co-hosted caller reaches services through these.
        self.local_methods = LocalMethods()
        self._mux: mux_server.MuxServicer | None = None
        self._verifier: Verifier | None = None
        if settings.insecure:
            log.warning("INSECURE MODE: unauthenticated callers act as operators; never run this in production")
            auth = devmode.with_dev_secret(auth, settings.data_dir)  # so `loomflow token` mints accepted tokens
            if devmode.has_token_key(auth):
                self._verifier = build_verifier(auth)
        else:
            self._verifier = build_verifier(auth)  # fails fast on a missing key
        self._auth = auth
        try:
            self._credentials = server_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        except (OSError, ValueError) as error:
            raise ConfigError(f"LOOMFLOW_TLS_CERT / LOOMFLOW_TLS_KEY / LOOMFLOW_TLS_CLIENT_CA: {error}") from None

    def _build(self) -> None:
        # grpc.aio objects bind to the running event loop, so they are made in start().
        settings, services = self.settings, self.services
        if settings.tracing:
            # Before services open their channels: it wraps the channel factories.
            setup_tracing(process_name(settings), settings.otlp_endpoint)
        self._health = health.aio.HealthServicer()
        configure_tenant_labels(settings.metrics_max_tenants)
        interceptor = KernelInterceptor(
            self._verifier,
            {s.full_name for s in services if s.accepts_end_users}
            | {f"{s.full_name}/{rpc}" for s in services for rpc in s.end_user_rpcs},
            traced=settings.tracing,
            all_tenants_rpcs={f"{s.full_name}/{rpc}" for s in services for rpc in s.all_tenants_rpcs},
            limiter=TenantLimiter(
                settings.rate_limit_per_user,
                settings.rate_burst,
                settings.max_inflight_per_user,
                max_tenants=settings.rate_limit_max_tenants,
            ),
            service_identities=ServiceIdentities(self._auth.service_identities),
            refusals=RefusalRecorder({s.full_name: s.on_refusal for s in services if s.on_refusal is not None}),
            insecure=settings.insecure,
        )
        limit = settings.max_message_bytes
        self._server = grpc.aio.server(
            interceptors=server_interceptors() if settings.tracing else None,
            options=[*server_options(settings), ("grpc.max_send_message_length", limit)],
        )
        self._health_server: grpc.aio.Server | None = None
        if settings.health_port:
            # Kubernetes' gRPC probes speak neither TLS nor metadata: a plaintext port with health only.
            self._health_server = grpc.aio.server(options=[("grpc.so_reuseport", reuseport(settings))])
            health_pb2_grpc.add_HealthServicer_to_server(self._health, self._health_server)
        registrar = WrappingRegistrar(self._server, interceptor, self.local_methods)
        for service in services:
            service.register(registrar)  # type: ignore[arg-type]  # duck-types the two methods generated code calls
        # The internal callers' multiplexed streams over the same wrapped handlers (not in reflection:
        # external callers keep the unary RPCs).
        self._mux = mux_server.add_to_server(
            self._server, self.local_methods, interceptor, traced=settings.tracing, max_message_bytes=limit
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        names = [s.full_name for s in services] + [health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, self._server)

    async def start(self) -> int:
        """Binds, runs every service's ``on_start`` and reports SERVING. Returns the port.

        A start-up failure (a port in use, an unreachable backend) stops what had started and
        raises :class:`ConfigError` naming the setting to change.
        """
        self._build()
        started: list[HostedService] = []
        try:
            port = await self._bind()
            for service in self.services:
                started.append(service)
                for hook in service.on_start:
                    try:
                        await hook()
                    except ConfigError:
                        raise
                    except Exception as exc:
                        raise ConfigError(startup_failure(service, exc)) from exc
            await self._server.start()
        except BaseException:
            await self._server.stop(0)
            if self._health_server is not None:
                await self._health_server.stop(0)
            await self._run_stop_hooks(started, quiet=True)  # a half-started backend may fail to close too
            raise
        self.port = port
        for service in self.services:
            await self._health.set(service.full_name, health_pb2.HealthCheckResponse.SERVING)
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving",
            extra={
                "address": f"{self.settings.host}:{port}",
                "tls": "mtls" if self.settings.tls_client_ca else "plaintext" if self._credentials is None else "tls",
                "services": [s.name for s in self.services],
                "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],  # uvloop or asyncio
            },
        )
        return self.port

    async def _bind(self) -> int:
        settings = self.settings
        host, wanted = settings.host, settings.port
        address = f"[{host}]:{wanted}" if ":" in host else f"{host}:{wanted}"
        try:
            if port_in_use(host, wanted, shared=settings.workers > 1):
                port = 0
            elif self._credentials is None:
                port = self._server.add_insecure_port(address)
            else:
                port = self._server.add_secure_port(address, self._credentials)
        except RuntimeError:  # grpc's "Failed to bind"
            port = 0
        if port == 0:
            raise ConfigError(
                f"cannot listen on {address} (in use, or not an address of this machine): "
                "choose another with --port / LOOMFLOW_PORT (or --host / LOOMFLOW_HOST)"
            )
        if self._health_server is not None:
            health_address = address.rsplit(":", 1)[0] + f":{self.settings.health_port}"
            taken = port_in_use(host, self.settings.health_port, shared=settings.workers > 1)
            if taken or self._health_server.add_insecure_port(health_address) == 0:
                raise ConfigError(
                    f"cannot serve plaintext health checks on {health_address}: "
                    "choose another with --health-port / LOOMFLOW_HEALTH_PORT"
                )
            await self._health_server.start()
        self.bound_port = port  # known to on_start hooks; `port` is set once serving
        try:
            setup_metrics(
                process_name(self.settings), self.settings.metrics_port, host, ",".join(self.settings.service_names())
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{self.settings.metrics_port} ({exc.strerror}): "
                "choose another with --metrics-port / LOOMFLOW_METRICS_PORT (0 turns the endpoint off)"
            ) from None
        return port

    async def _run_stop_hooks(self, services: list[HostedService], quiet: bool = False) -> None:
        for service in reversed(services):
            for hook in service.on_stop:
                try:
                    await hook()
                except Exception as exc:
                    if quiet:
                        log.debug("error stopping %s: %s", service.name, exc)
                    else:
                        log.exception("error stopping %s", service.name)

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
        if self._mux is not None:
            self._mux.drain()  # and open multiplexed streams new carried calls
        for service in self.services:
            for hook in service.on_drain:
                try:
                    await hook()
                except Exception:
                    log.exception("error draining %s", service.name)
        await stopping
        if self._health_server is not None:
            await self._health_server.stop(0)
        await self._run_stop_hooks(self.services)
        if self.settings.tracing:
            flush_spans()  # the OTLP batch still holds the last spans
        log.info("stopped")

    async def run_until_signal(self, on_serving: Callable[[int], None] | None = None) -> None:
        """Serves until SIGTERM or SIGINT, then drains gracefully; ``on_serving`` gets the bound port."""
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        # Before start(): the port accepts connections during start(), and a SIGTERM that arrived
        # before the handlers would kill the process without a drain.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested.set)
        try:
            port = await self.start()
            if on_serving is not None:
                on_serving(port)
            with heap.settled():
                await stop_requested.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        log.info("draining", extra={"grace_seconds": self.settings.shutdown_grace})
        await self.stop()
