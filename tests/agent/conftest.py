"""A secure suite (real tokens) with the Agent and the four real services, and clients for it.

Every test that starts a co-hosted suite (the ``tenancy`` fixture or :func:`secure_suite`)
runs once per transport the Agent can use to reach the services (``inprocess``, ``grpc``,
and ``mux``: multiplexed streams over real sockets to the server's own port): the
conformance suite of kernel/transport/inprocess.py and kernel/transport/mux*.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from loomflow.client import Agent, AuditClient, BudgetClient, MemoryClient, PolicyClient
from loomflow.client import Approval as ClientApproval
from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.testing.suite import TEST_JWT_SECRET, RunningSuite, running_suite

AUTH = AuthSettings(jwt_secret=TEST_JWT_SECRET)

# Fast approvals and short waits so failures show quickly; each test may override.
AGENT_DEFAULTS: dict[str, Any] = {"approval_timeout_ms": 5000, "approval_poll_ms": 200, "call_timeout_ms": 5000}

TRANSPORTS = ("inprocess", "grpc", "mux")
_transport: contextvars.ContextVar[str] = contextvars.ContextVar("agent_transport", default=TRANSPORTS[0])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every transport for a test that starts a co-hosted suite; the default alone for the others."""
    starts_suite = "tenancy" in metafunc.fixturenames or "secure_suite" in metafunc.function.__code__.co_names
    if "agent_transport" in metafunc.fixturenames:
        metafunc.parametrize("agent_transport", TRANSPORTS if starts_suite else TRANSPORTS[:1], indirect=True)


@pytest.fixture(autouse=True)
def agent_transport(request: pytest.FixtureRequest) -> Iterator[str]:
    """The transport :func:`secure_suite` gives the Agent (``LOOMFLOW_AGENT_TRANSPORT``) in this test."""
    chosen: str = request.param
    token = _transport.set(chosen)
    yield chosen
    _transport.reset(token)


def audit_keys() -> dict[str, str]:
    """Fresh audit keys: secure mode refuses to start the audit service without them."""
    return {name: secrets.token_hex(32) for name in ("hmac_key", "signing_key", "payload_key")}


def token(subject: str, role: Role = Role.USER, ttl_seconds: int = 600) -> str:
    return mint_token(AUTH, subject, role, ttl_seconds=ttl_seconds)


@dataclass
class Tenancy:
    """One running suite, seen by its users and its operator."""

    suite: RunningSuite
    clients: list[Agent] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.suite.address

    def agent(self, user: str | None, role: Role = Role.USER) -> Agent:
        """An Agent client holding ``user``'s token (None: no token at all)."""
        client = Agent(self.address, token=token(user, role) if user is not None else None, timeout=30)
        self.clients.append(client)
        return client

    @property
    def operator(self) -> str:
        return token("ops", Role.OPERATOR)

    def memory(self) -> MemoryClient:
        return MemoryClient(self.suite.channel, token=self.operator)

    def budget(self) -> BudgetClient:
        return BudgetClient(self.suite.channel, token=self.operator)

    def policy(self) -> PolicyClient:
        return PolicyClient(self.suite.channel, token=self.operator)

    def audit(self) -> AuditClient:
        return AuditClient(self.suite.channel, token=self.operator)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


@contextlib.asynccontextmanager
async def secure_suite(
    data_dir: Path,
    agent: Mapping[str, Any] | None = None,
    services: str = "memory,budget,policy,audit,agent",
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> AsyncIterator[Tenancy]:
    merged: dict[str, dict[str, Any]] = {
        "agent": {**AGENT_DEFAULTS, "transport": _transport.get(), **(agent or {})},
        "audit": audit_keys(),
    }
    for section, values in (overrides or {}).items():
        merged.setdefault(section, {}).update(values)
    async with running_suite(data_dir, services=services, insecure=False, overrides=merged) as running:
        tenancy = Tenancy(running)
        try:
            yield tenancy
        finally:
            await tenancy.close()


@pytest.fixture
async def tenancy(tmp_path: Path) -> AsyncIterator[Tenancy]:
    async with secure_suite(tmp_path) as running:
        yield running


def write_script(path: Path, cases: list[dict[str, Any]]) -> str:
    path.write_text(json.dumps(cases))
    return str(path)


@contextlib.asynccontextmanager
async def approver(
    tenancy: Tenancy, decide: Callable[[ClientApproval], bool] = lambda _: True
) -> AsyncIterator[list[ClientApproval]]:
    """An operator bot watching every tenant's approvals and resolving each as ``decide`` says."""
    seen: list[ClientApproval] = []
    policy = tenancy.policy()
    subscribed = asyncio.Event()

    async def watch() -> None:
        stream = policy.watch_approvals(anonymous=True, all_tenants=True, replay_pending=True)
        subscribed.set()
        async for raw in stream:
            approval = ClientApproval.from_proto(raw)
            if approval.status != "pending":
                continue
            seen.append(approval)
            await policy.resolve_approval(
                approval.approval_id, decide(approval), user_id=approval.user_id, anonymous=approval.user_id is None
            )

    task = asyncio.create_task(watch())
    await subscribed.wait()
    await asyncio.sleep(0.05)  # let the stream reach the server before the test creates approvals
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await policy.close()
