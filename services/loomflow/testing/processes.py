"""Runs `loomflow serve` as real OS processes on free loopback ports.

For tests and benchmarks that need the production shape (each service its own
process), a server that can be SIGKILLed, or a client in another language::

    with ServeProcess("memory,budget", tmp_path) as serve:
        channel = grpc.insecure_channel(serve.address)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import loomflow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def loomflow_script() -> Path:
    """The installed ``loomflow`` console script of the running venv (scripts/bootstrap.sh installs it)."""
    script = Path(sys.prefix) / "bin" / "loomflow"
    if not script.exists():
        raise FileNotFoundError(f"{script} is missing: installing the loomflow package makes it")
    return script


def import_roots() -> list[str]:
    """The folders this process imports ``loomflow`` from: the server's and the client's (one namespace
    package, two distributions), whether installed or checked out and installed editable."""
    return list(dict.fromkeys(str(Path(folder).parent) for folder in loomflow.__path__))


def source_env() -> dict[str, str]:
    """The environment that lets a child Python import the same loomflow as this process."""
    paths = import_roots()
    existing = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths + ([existing] if existing else []))}


@dataclass
class ServeProcess:
    """One `loomflow serve` child process."""

    services: str
    data_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    command: Sequence[str] = ()
    """The program to run instead of ``python -m loomflow.cli serve`` (benchmarks' floor servers)."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServeProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **source_env(),
            "LOOMFLOW_HOST": "127.0.0.1",
            "LOOMFLOW_PORT": str(self.port),
            "LOOMFLOW_METRICS_PORT": "0",
            "LOOMFLOW_SERVICES": self.services,
            "LOOMFLOW_DATA_DIR": str(self.data_dir),
            "LOOMFLOW_LOG_LEVEL": "warning",
            **self.env,
        }
        log = (self.data_dir / f"serve-{self.port}.log").open("ab")
        command = list(self.command) or [sys.executable, "-m", "loomflow.cli", "serve"]
        self.process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            self.wait_serving(timeout)
        except BaseException:
            self.kill()  # a server that never came up must not outlive the caller that gave up on it
            raise
        return self

    def wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"loomflow serve exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with grpc.insecure_channel(self.address) as channel:
                    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"loomflow serve on {self.address} not SERVING after {timeout}s: {self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        path = self.data_dir / f"serve-{self.port}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no drain, no cleanup — a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the graceful drain; returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return int(self.process.returncode or 0)

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
