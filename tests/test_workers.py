"""`loomflow serve --workers 2`: two real processes on one port (SO_REUSEPORT), one SQLite memory store.

Which worker a connection reaches is the kernel's choice; each worker serves its own metrics port
(``metrics_port + i``), whose per-tenant RPC counter tells which worker answered a probe with a tenant
of its own. The configurations a second process cannot share are refused in
tests/test_startup_errors.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loomflow.testing import databases
from loomflow.testing.processes import ServeProcess, free_port
from loomflow.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    budget_pb2,
    budget_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
    tenancy_pb2,
)
from tests.agent.conftest import audit_keys

CHANNELS = 24  # connections opened to find one on each worker: all on one worker has odds 2 in 2**24


def free_port_pair() -> int:
    """A port p with p + 1 free too (the two workers' metrics ports)."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, int, int]]:
    metrics, health = free_port_pair(), free_port()
    env = {
        "LOOMFLOW_WORKERS": "2",
        "LOOMFLOW_INSECURE": "true",
        "LOOMFLOW_METRICS_PORT": str(metrics),
        "LOOMFLOW_HEALTH_PORT": str(health),
    }
    serve = ServeProcess("memory", tmp_path_factory.mktemp("workers"), env=env).start(timeout=60)  # two processes start
    try:
        wait_until_both_listen(serve)
        yield serve, metrics, health
    finally:
        serve.stop()


def listeners(serve: ServeProcess, port: int = 0) -> set[int]:
    """The supervisor's children listening on ``port`` (default: the served port)."""
    assert serve.process is not None
    return {
        child.pid
        for child in psutil.Process(serve.process.pid).children()
        for conn in child.net_connections("tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == (port or serve.port)
    }


def wait_until_both_listen(serve: ServeProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(listeners(serve)) < 2:
        assert time.monotonic() < deadline, "the second worker never listened"
        time.sleep(0.2)


def served_tenants(metrics_port: int) -> set[str]:
    """The tenants whose calls this worker counted (its Prometheus endpoint)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        line.split('user_id="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("loomflow_rpc_requests_total{") and 'user_id="' in line
    }


def scope(user: str) -> tenancy_pb2.UserScope:
    return tenancy_pb2.UserScope(user_id=user)


def stubs_by_worker(serve: ServeProcess, metrics: int, tag: str) -> dict[int, list[memory_pb2_grpc.MemoryServiceStub]]:
    """Opens CHANNELS connections and sorts them by the worker that answers each (0 or 1)."""
    found: dict[int, list[memory_pb2_grpc.MemoryServiceStub]] = {0: [], 1: []}
    for k in range(CHANNELS):
        # A subchannel pool of its own: a new connection, not the previous channel's shared one.
        channel = grpc.insecure_channel(serve.address, options=[("grpc.use_local_subchannel_pool", 1)])
        stub = memory_pb2_grpc.MemoryServiceStub(channel)
        probe = f"probe-{tag}-{k}"
        stub.Recall(memory_pb2.RecallRequest(scope=scope(probe), query="which worker"), timeout=30)
        worker = next(i for i in (0, 1) if probe in served_tenants(metrics + i))
        found[worker].append(stub)
    return found


def recalled(stub: memory_pb2_grpc.MemoryServiceStub, user: str, query: str) -> list[str]:
    reply = stub.Recall(memory_pb2.RecallRequest(scope=scope(user), query=query, limit=5), timeout=10)
    return [hit.episode.input for hit in reply.hits]


def test_two_workers_share_the_port_and_both_take_calls(workers: tuple[ServeProcess, int, int]) -> None:
    serve, metrics, health = workers
    assert serve.process is not None
    children = psutil.Process(serve.process.pid).children()
    assert len(children) == 2, children
    assert listeners(serve) == {c.pid for c in children}, "both workers listen on the served port"
    assert listeners(serve, health) == {c.pid for c in children}, "and on the plaintext health port"
    found = stubs_by_worker(serve, metrics, "spread")
    assert all(found.values()), {i: len(stubs) for i, stubs in found.items()}
    for address in (serve.address, f"127.0.0.1:{health}"):  # both workers share the plaintext health port too
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_what_one_worker_remembers_or_forgets_the_other_sees(workers: tuple[ServeProcess, int, int]) -> None:
    serve, metrics, _ = workers
    found = stubs_by_worker(serve, metrics, "coherence")
    first, second = found[0][0], found[1][0]
    user = "coherent-user"
    first.Remember(
        memory_pb2.RememberRequest(scope=scope(user), session_id="s", input="my parrot is called Kiwi", output="ok"),
        timeout=10,
    )
    assert recalled(second, user, "parrot name") == ["my parrot is called Kiwi"]
    second.Remember(
        memory_pb2.RememberRequest(scope=scope(user), session_id="s", input="the boat is moored at Rye", output="ok"),
        timeout=10,
    )
    assert "the boat is moored at Rye" in recalled(first, user, "boat moored")
    first.Forget(memory_pb2.MemoryServiceForgetRequest(scope=scope(user)), timeout=10)
    assert recalled(second, user, "parrot name") == []
    assert recalled(first, user, "boat moored") == []


def test_a_dead_worker_is_restarted_and_sigterm_stops_them_all(tmp_path: Path) -> None:
    env = {"LOOMFLOW_WORKERS": "2", "LOOMFLOW_INSECURE": "true"}
    serve = ServeProcess("memory", tmp_path, env=env).start(timeout=60)
    try:
        assert serve.process is not None
        supervisor = psutil.Process(serve.process.pid)
        before = {c.pid for c in supervisor.children()}
        victim = sorted(before)[0]
        psutil.Process(victim).send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = {c.pid for c in supervisor.children()}
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.2)
        replaced = {c.pid for c in supervisor.children()}
        assert victim not in replaced, (before, replaced)
        assert len(replaced) == 2, (before, replaced)
        serve.wait_serving(60)
        serve.process.send_signal(signal.SIGTERM)
        assert serve.process.wait(timeout=60) == 0
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in replaced)
    finally:
        serve.kill()


def channels_by_worker(serve: ServeProcess, metrics: int, tag: str) -> dict[int, list[grpc.Channel]]:
    """Like :func:`stubs_by_worker`, the channels themselves (any service's stub can be made on them)."""
    found: dict[int, list[grpc.Channel]] = {0: [], 1: []}
    for k in range(CHANNELS):
        channel = grpc.insecure_channel(serve.address, options=[("grpc.use_local_subchannel_pool", 1)])
        probe = f"probe-{tag}-{k}"
        memory_pb2_grpc.MemoryServiceStub(channel).Recall(
            memory_pb2.RecallRequest(scope=scope(probe), query="which worker"), timeout=30
        )
        found[next(i for i in (0, 1) if probe in served_tenants(metrics + i))].append(channel)
    return found


@pytest.mark.postgres
@pytest.mark.redis
def test_a_whole_suite_on_two_workers_carries_a_conversation_across_them(tmp_path: Path) -> None:
    """Every service hosted twice on one port, on shared backends (SQLite files for Memory, Policy and
    the Agent's store; Redis for Budget; Postgres for Audit): a session begun on one worker goes on
    on the other, the Budget counts both workers' runs, and the tenant's one audit chain, appended by
    both processes in turn, verifies."""
    metrics, tag = free_port_pair(), f"w{os.getpid()}_{time.monotonic_ns() % 10**9}"
    with contextlib.ExitStack() as stack:
        audit_dsn = stack.enter_context(databases.entered(databases.postgres_schema(f"audit_{tag}")))
        budget_dsn = stack.enter_context(databases.entered(databases.redis_prefix(f"budget-{tag}")))
        env = {
            "LOOMFLOW_WORKERS": "2",
            "LOOMFLOW_INSECURE": "true",
            "LOOMFLOW_TRACING": "false",
            "LOOMFLOW_METRICS_PORT": str(metrics),
            "LOOMFLOW_BUDGET_DSN": budget_dsn,
            "LOOMFLOW_AUDIT_DSN": audit_dsn,
            **{f"LOOMFLOW_AUDIT_{k.upper()}": v for k, v in audit_keys().items()},
        }
        serve = ServeProcess("memory,budget,policy,audit,agent", tmp_path, env=env).start(timeout=120)
        stack.callback(serve.stop)
        wait_until_both_listen(serve)
        found = channels_by_worker(serve, metrics, "suite")
        assert all(found.values()), {i: len(c) for i, c in found.items()}
        workers = [agent_pb2_grpc.AgentServiceStub(found[i][0]) for i in (0, 1)]
        alice = scope("alice")
        runs = []
        for turn in range(4):  # alternating workers: 0, 1, 0, 1
            options = agent_pb2.RunOptions(prompt=f"turn {turn}: my parrot is called Kiwi", session_id="talk")
            runs.append(workers[turn % 2].Run(agent_pb2.RunRequest(scope=alice, options=options), timeout=60))
        assert all(r.run_id and not r.interrupted for r in runs), runs

        for channel in (found[0][0], found[1][0]):  # each worker sees the whole session, in order
            page = memory_pb2_grpc.MemoryServiceStub(channel).ListEpisodes(
                memory_pb2.ListEpisodesRequest(scope=alice, session_id="talk", page_size=10), timeout=10
            )
            assert [e.input for e in page.episodes][::-1] == [f"turn {t}: my parrot is called Kiwi" for t in range(4)]
            status = budget_pb2_grpc.BudgetServiceStub(channel).GetStatus(
                budget_pb2.GetStatusRequest(scope=alice), timeout=10
            )
            assert status.total.output_tokens == sum(r.usage.output_tokens for r in runs), "a worker's runs were lost"
            verified = audit_pb2_grpc.AuditServiceStub(channel).Verify(audit_pb2.VerifyRequest(scope=alice), timeout=30)
            assert verified.ok, verified
            assert sum(chain.entries_checked for chain in verified.chains) >= 4, verified
