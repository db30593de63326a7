"""Faults to inject: a private Postgres and Redis that can be crashed and restarted, and
`loomflow serve` processes that can be SIGKILLed, restarted on the same port, or frozen.

The backends are our own copies (``scripts/services.sh`` with a private
``LOOMFLOW_SERVICES_DIR``), never the shared ones other people's tests use. Redis is
switched to an append-only file fsynced on every write (``appendfsync always``),
so a kill -9 loses nothing it acknowledged: that is the durability a budget
ledger on Redis needs, and what the fault run checks. Everything is on loopback.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from bench.harness import REPO
from loomflow.testing.processes import ServeProcess

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


class PrivateBackends:
    """Postgres 15 and Redis of our own, in ``root``, started by scripts/services.sh."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_dir = root / "svc"
        self.postgres_dsn = ""
        self.redis_url = ""

    def _script(self, action: str) -> str:
        env = {**os.environ, "LOOMFLOW_SERVICES_DIR": str(self.state_dir)}
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / "services.sh"), action],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        )
        return done.stdout

    def start(self) -> PrivateBackends:
        self.root.chmod(0o755)  # mkdtemp makes it 0700; the postgres user must reach the data folder inside
        exported = dict(re.findall(r"export (\w+)=(\S+)", self._script("start")))
        self.postgres_dsn = exported["LOOMFLOW_TEST_POSTGRES_DSN"]
        self.redis_url = exported["LOOMFLOW_TEST_REDIS_URL"]
        self._durable_redis()
        return self

    def stop(self) -> None:
        if self.state_dir.exists():
            self._script("stop")

    # -- Postgres ----------------------------------------------------------------------

    def _as_postgres(self, command: list[str]) -> None:
        if os.geteuid() == 0:
            quoted = " ".join(f"'{part}'" for part in command)
            command = ["su", "postgres", "-s", "/bin/sh", "-c", quoted]
        # No pipes: the restarted postmaster would inherit them and keep them open.
        subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
            check=True,
        )

    def restart_postgres(self) -> None:
        """A crash and a restart: ``pg_ctl restart -m immediate`` (no shutdown checkpoint; WAL recovery)."""
        pg = self.state_dir / "pg"
        log = str(pg / "server.log")
        self._as_postgres(
            [str(PG_BIN / "pg_ctl"), "-D", str(pg / "data"), "-l", log, "-m", "immediate", "-w", "-t", "60", "restart"]
        )

    # -- Redis -------------------------------------------------------------------------

    @property
    def redis_port(self) -> int:
        return int(self.redis_url.rsplit(":", 1)[1].split("/", 1)[0])

    def _client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=5)

    def _durable_redis(self) -> None:
        """Turns on the append-only file, fsynced per write, and waits for its first rewrite."""
        client = self._client()
        client.config_set("appendfsync", "always")
        client.config_set("appendonly", "yes")
        for _ in range(300):
            info = client.info("persistence")
            rewriting = info.get("aof_rewrite_in_progress") or info.get("aof_rewrite_scheduled")
            if info.get("aof_enabled") == 1 and not rewriting:
                return
            time.sleep(0.05)
        raise TimeoutError("redis did not finish turning on its append-only file")

    def crash_redis(self) -> None:
        pid = int((self.state_dir / "redis.pid").read_text().strip())
        os.kill(pid, signal.SIGKILL)
        for _ in range(200):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)

    def start_redis(self) -> None:
        """Starts Redis again on the same port from its append-only file."""
        server = shutil.which("redis-server") or "redis-server"
        subprocess.run(
            [
                server,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.state_dir / "redis.pid"),
                "--logfile",
                str(self.state_dir / "redis.log"),
                "--dir",
                str(self.state_dir),
            ],
            check=True,
            timeout=30,
        )
        client = self._client()
        for _ in range(300):
            try:
                if client.ping() and not client.info("persistence").get("loading"):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise TimeoutError("redis did not come back")


# -- loomflow processes ------------------------------------------------------------------


def crash(process: ServeProcess) -> None:
    """SIGKILL: no drain, no cleanup."""
    process.kill()


def restart(process: ServeProcess) -> None:
    """Starts the process again on the same port and waits until it is SERVING."""
    process.start(timeout=60)


def freeze(process: ServeProcess) -> None:
    """SIGSTOP: the process holds its connections but answers nothing (a dependency slower than any deadline)."""
    assert process.process is not None
    os.kill(process.process.pid, signal.SIGSTOP)


def thaw(process: ServeProcess) -> None:
    assert process.process is not None
    os.kill(process.process.pid, signal.SIGCONT)
