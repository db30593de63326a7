"""``loomflow serve --workers N``: N server processes sharing one port, supervised by the first.

A grpc.aio server serves on one core. With ``--workers N`` the process started by the user becomes a
supervisor: it starts N workers (``loomflow serve`` again, same flags) that all bind the port with
``SO_REUSEPORT``, so the kernel spreads connections over them. Worker ``i`` serves metrics on
``metrics_port + i``. The supervisor restarts a worker that dies, stops them all on SIGTERM/SIGINT (each
drains gracefully), and exits 2 when a worker reports a configuration error.

Only services whose state lives in a backend several processes share may run so: a service keeping
state in the process (a ``memory://`` ledger or store, the audit log's single-writer file sink,
embedded Chroma) would give each worker its own diverging copy, so the supervisor refuses to start.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from loomflow.kernel import config
from loomflow.kernel.server import port_in_use
from loomflow.kernel.settings import ServerSettings

WORKER_INDEX_ENV = "LOOMFLOW_WORKER_INDEX"
"""Set by the supervisor in each worker's environment: this process serves, it does not supervise."""

RESTART_DELAY_SECONDS = 1.0
QUICK_DEATH_SECONDS = 5.0
QUICK_DEATHS_ALLOWED = 5
PR_SET_PDEATHSIG = 1

# Backends whose state several processes share, per service settings section and field.
SHARED: dict[tuple[str, str], tuple[str, ...]] = {
    ("memory", "dsn"): ("", "sqlite", "postgres", "postgresql", "redis", "rediss"),
    ("budget", "dsn"): ("redis", "rediss", "postgres", "postgresql"),
    ("policy", "dsn"): ("", "sqlite", "postgres", "postgresql"),
    ("audit", "dsn"): ("postgres", "postgresql"),
    ("agent", "store_dsn"): ("", "sqlite", "postgres", "postgresql"),
}


def worker_index() -> int | None:
    """This process's worker number when a supervisor started it, else None."""
    raw = os.environ.get(WORKER_INDEX_ENV, "")
    return int(raw) if raw.isdigit() else None


def in_process_state(args: argparse.Namespace, services: Sequence[str]) -> list[str]:
    """The hosted services that keep state in the process, each with the setting that says so."""
    from loomflow import suite

    found = []
    for (section, name), schemes in SHARED.items():
        if section not in services:
            continue
        settings = config.load(section, suite.service_module(section).Settings, args)
        value = str(getattr(settings, name))
        scheme = urlsplit(value).scheme.lower() if value else ""
        if scheme not in schemes:
            setting = f"--{section}-{name.replace('_', '-')}"
            found.append(f"{section} ({setting} {repr(value) if value else 'empty'}: state in the process)")
    return found


def check(args: argparse.Namespace, settings: ServerSettings) -> None:
    """Raises :class:`ConfigError` when ``settings.workers`` processes cannot serve this configuration."""
    if settings.workers < 1:
        raise config.ConfigError(f"--workers / LOOMFLOW_WORKERS {settings.workers}: at least 1")
    single = in_process_state(args, settings.service_names())
    if single:
        raise config.ConfigError(
            f"--workers {settings.workers} needs every hosted service's state in a shared backend, but "
            + "; ".join(single)
            + ": give it a shared backend (sqlite/postgres/redis; audit: postgres) or --workers 1 / LOOMFLOW_WORKERS"
        )
    if port_in_use(settings.host, settings.port):
        raise config.ConfigError(
            f"cannot listen on {settings.host}:{settings.port} (in use): "
            "choose another with --port / LOOMFLOW_PORT (or --host / LOOMFLOW_HOST)"
        )


def chosen_port(settings: ServerSettings) -> int:
    """The port every worker binds: ``--port 0`` is resolved once here, so they all share one."""
    if settings.port:
        return settings.port
    with socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET) as sock:
        sock.bind((settings.host, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # A supervisor killed without a chance to stop its workers must not leave them serving.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Worker:
    index: int
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_deaths: int = 0

    def start(self) -> None:
        env = {**os.environ, WORKER_INDEX_ENV: str(self.index)}
        self.process = subprocess.Popen(self.command, env=env, preexec_fn=_die_with_parent)
        self.started_at = time.monotonic()


@dataclass
class Supervisor:
    settings: ServerSettings
    argv: list[str]
    workers: list[Worker] = field(default_factory=list)
    stopping: bool = False

    def commands(self) -> list[list[str]]:
        port = chosen_port(self.settings)
        metrics = self.settings.metrics_port
        base = [sys.executable, "-m", "loomflow.cli", *self.argv, "--port", str(port)]
        return [[*base, "--metrics-port", str(metrics + i if metrics else 0)] for i in range(self.settings.workers)]

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop_requested)
        self.workers = [Worker(i, command) for i, command in enumerate(self.commands())]
        for worker in self.workers:
            worker.start()
        code = 0
        while not self.stopping:
            for worker in self.workers:
                code = self._check(worker)
                if code:
                    self.stopping = True
                    break
            time.sleep(0.2)
        self._stop_all()
        return code

    def _stop_requested(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def _check(self, worker: Worker) -> int:
        """0 while the worker serves or was restarted; the exit code for the supervisor otherwise."""
        assert worker.process is not None
        returned = worker.process.poll()
        if returned is None or self.stopping:
            return 0
        if returned == 2:
            return 2  # a configuration error: the worker printed it; restarting cannot help
        quick = time.monotonic() - worker.started_at < QUICK_DEATH_SECONDS
        worker.quick_deaths = worker.quick_deaths + 1 if quick else 0
        if worker.quick_deaths > QUICK_DEATHS_ALLOWED:
            print(f"loomflow: worker {worker.index} keeps exiting ({returned}): stopping", file=sys.stderr, flush=True)
            return 1
        print(
            f"loomflow: worker {worker.index} (pid {worker.process.pid}) exited with {returned}: restarting it",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(RESTART_DELAY_SECONDS if quick else 0)
        worker.start()
        return 0

    def _stop_all(self) -> None:
        running = [w.process for w in self.workers if w.process is not None and w.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)  # each drains: health NOT_SERVING, in-flight calls finish
        deadline = time.monotonic() + self.settings.shutdown_delay + self.settings.shutdown_grace + 10
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def supervise(args: argparse.Namespace, settings: ServerSettings, argv: Sequence[str]) -> int:
    """Checks the configuration, then runs ``settings.workers`` workers until SIGTERM."""
    check(args, settings)
    return Supervisor(settings, list(argv)).run()
