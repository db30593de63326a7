"""The server's own settings section (flags without a section prefix).

Generic over services: the suite (``loomflow.suite.SuiteSettings``) says which services
there are, hosts them all by default, and names its edge in the per-tenant limits' help.
"""

from __future__ import annotations

from dataclasses import dataclass

from loomflow.kernel.config import option


@dataclass(frozen=True)
class ServerSettings:
    host: str = option("127.0.0.1", "address to listen on (0.0.0.0 in containers)")
    port: int = option(50051, "gRPC port (0 picks a free one)")
    metrics_port: int = option(
        9464, "Prometheus metrics port (0 disables the endpoint; with --workers, worker i serves metrics_port + i)"
    )
    workers: int = option(
        1,
        "server processes sharing the port (SO_REUSEPORT), supervised by the first; more than 1 only when every "
        "hosted service keeps its state in a shared backend",
    )
    services: str = option("", "comma-separated services this process hosts")
    data_dir: str = option(".loomflow", "folder for embedded state (SQLite files, logs)")
    insecure: bool = option(False, "accept unauthenticated calls as an operator (local development only)")
    event_loop: str = option("uvloop", "asyncio event loop: uvloop (less server CPU per RPC) or asyncio")
    log_level: str = option("info", "log level: debug, info, warning, error")
    log_format: str = option("json", "log format: json or text")
    log_max_line_chars: int = option(16_384, "longest log line; longer ones are cut in the middle, marked")
    log_repeats_per_minute: int = option(20, "errors with the same logger and message logged per minute at most")
    migrate: bool = option(
        True,
        "apply database migrations at start (false: no DDL; refuse a schema older than `loomflow migrate` makes)",
    )
    shutdown_grace: float = option(10.0, "seconds in-flight calls get to finish after SIGTERM")
    shutdown_delay: float = option(
        0.0, "seconds to keep serving while health says NOT_SERVING, so balancers stop routing first"
    )
    max_message_bytes: int = option(4 * 1024 * 1024, "largest request or response message")
    metrics_max_tenants: int = option(1000, "distinct user_id label values per metric before __other__")
    tracing: bool = option(True, "OpenTelemetry gRPC instrumentation of servers and clients")
    otlp_endpoint: str = option("", "OTLP/gRPC collector for traces (empty: not exported)")
    rate_limit_per_user: float = option(
        0.0, "calls per second one tenant may make to end-user RPCs, sustained (token bucket; 0: no limit)"
    )
    rate_burst: int = option(20, "calls one tenant may make at once before rate_limit_per_user paces it")
    max_inflight_per_user: int = option(
        0, "calls of one tenant to end-user RPCs running at the same time, at most (0: no limit)"
    )
    rate_limit_max_tenants: int = option(
        100_000, "tenants whose rate-limit state is kept (LRU; evicted: a full bucket)"
    )

    tls_cert: str = option("", "PEM certificate chain the server presents (with tls_key: TLS; reloaded on change)")
    tls_key: str = option("", "PEM private key of tls_cert")
    tls_client_ca: str = option("", "PEM CA bundle client certificates must chain to (set: mTLS, clients need a cert)")
    health_port: int = option(
        0, "plaintext port serving only grpc.health (for Kubernetes probes, which speak no TLS; 0: none)"
    )
    max_connection_age_ms: int = option(
        300_000, "close client connections after this long, so callers re-resolve and spread over replicas (0: never)"
    )
    max_connection_age_grace_ms: int = option(30_000, "time calls in flight get when a connection reaches its age")

    def service_names(self) -> list[str]:
        return [name.strip() for name in self.services.split(",") if name.strip()]
