"""Starts the suite as real processes in one of two shapes, for benchmarks and load tests.

* ``one-process``: all five services in one `loomflow serve` (the embedded default);
* ``per-service``: each service its own process on loopback (the production shape), the
  Agent pointed at the others through ``LOOMFLOW_AGENT_*_ADDRESS``.

Both run in secure mode with a fresh signing secret; :class:`Suite` mints tokens.
"""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.testing.processes import ServeProcess

TOPOLOGIES = ("one-process", "per-service")
INTERNAL = ("memory", "budget", "policy", "audit")
START_TIMEOUT_S = 120.0  # a loaded shared VM took over 30 s to start all five services in one process


def secure_env(secret: str) -> dict[str, str]:
    """Settings every process of one suite shares: auth and audit keys."""
    return {
        "LOOMFLOW_AUTH_JWT_SECRET": secret,
        "LOOMFLOW_AUDIT_HMAC_KEY": secrets.token_hex(32),
        "LOOMFLOW_AUDIT_SIGNING_KEY": secrets.token_hex(32),
        "LOOMFLOW_AUDIT_PAYLOAD_KEY": secrets.token_hex(32),
        "LOOMFLOW_LOG_LEVEL": "warning",
        "LOOMFLOW_TRACING": "false",
    }


@dataclass
class Suite:
    topology: str
    processes: list[ServeProcess]
    secret: str
    agent_address: str
    internal_address: dict[str, str] = field(default_factory=dict)

    def pids(self) -> list[int]:
        return [p.process.pid for p in self.processes if p.process is not None]

    def user_token(self, user_id: str) -> str:
        return mint_token(AuthSettings(jwt_secret=self.secret), user_id, Role.USER, ttl_seconds=24 * 3600)

    def operator_token(self) -> str:
        return mint_token(AuthSettings(jwt_secret=self.secret), "bench-operator", Role.OPERATOR, ttl_seconds=86400)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def start_suite(topology: str, data_dir: Path | None = None, extra_env: dict[str, str] | None = None) -> Suite:
    if topology not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {TOPOLOGIES}")
    root = data_dir or Path(tempfile.mkdtemp(prefix=f"loomflow-{topology}-"))
    secret = secrets.token_hex(32)
    env = {**secure_env(secret), **(extra_env or {})}
    if topology == "one-process":
        process = ServeProcess("memory,budget,policy,audit,agent", root / "all", env=env).start(START_TIMEOUT_S)
        addresses = dict.fromkeys(INTERNAL, process.address)
        return Suite(topology, [process], secret, process.address, addresses)
    started: list[ServeProcess] = []
    try:
        for name in INTERNAL:
            started.append(ServeProcess(name, root / name, env=env).start(START_TIMEOUT_S))
        addresses = {name: p.address for name, p in zip(INTERNAL, started, strict=True)}
        agent_env = {**env, **{f"LOOMFLOW_AGENT_{n.upper()}_ADDRESS": a for n, a in addresses.items()}}
        started.append(ServeProcess("agent", root / "agent", env=agent_env).start(START_TIMEOUT_S))
    except BaseException:
        for process in started:
            process.kill()
        raise
    return Suite(topology, started, secret, started[-1].address, addresses)
