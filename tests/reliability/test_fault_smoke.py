"""A short fault-injection run (the long one is `python -m bench faults`).

Three real `loomflow serve` processes — Memory + Audit, Budget + Policy, the
Agent — on embedded durable backends (SQLite, the audit file, SQLite policy,
in-process budget), with tenants running through the Agent the whole time. The
Memory + Audit process is SIGKILLed and restarted on its port; the Budget +
Policy process is frozen (SIGSTOP) past the Agent's call deadline and thawed.
The Agent answers UNAVAILABLE or DEADLINE_EXCEEDED within its run deadline, runs
succeed again by themselves once each fault is cleared, not one acknowledged
episode or audit entry is lost, the chains verify, and no budget hold outlives
its TTL (the Reserves a frozen Budget applies only after the Agent gave up on
them included).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import chaos
from bench.fault_load import Load, Outcome, audit_verifies, budget_after_ttl, lost_writes, stop_load
from bench.topology import Suite, secure_env
from loomflow.testing.processes import ServeProcess

RUN_TIMEOUT_S = 3.0
CALL_TIMEOUT_S = 1.0
TTL_S = RUN_TIMEOUT_S + 1.0 + 5.0  # the run's deadline (+ finish grace) + the Agent's TTL margin
RECOVERY_BOUND_S = 5.0
OUTAGE_S = 1.0


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[Suite]:
    secret = secrets.token_hex(32)
    env = secure_env(secret) | {
        "LOOMFLOW_AGENT_TIMEOUT_MS": str(int(RUN_TIMEOUT_S * 1000)),
        "LOOMFLOW_AGENT_CALL_TIMEOUT_MS": str(int(CALL_TIMEOUT_S * 1000)),
        "LOOMFLOW_BUDGET_USER_LIMITS": "total_tokens=1000000000000",  # GetStatus then reports holds
    }
    started: list[ServeProcess] = []
    try:
        for services in ("memory,audit", "budget,policy"):
            started.append(ServeProcess(services, tmp_path / services.replace(",", "-"), env=env).start())
        stores, ledger = started
        agent_env = env | {
            "LOOMFLOW_AGENT_MEMORY_ADDRESS": stores.address,
            "LOOMFLOW_AGENT_AUDIT_ADDRESS": stores.address,
            "LOOMFLOW_AGENT_BUDGET_ADDRESS": ledger.address,
            "LOOMFLOW_AGENT_POLICY_ADDRESS": ledger.address,
        }
        started.append(ServeProcess("agent", tmp_path / "agent", env=agent_env).start())
        addresses = {"memory": stores.address, "audit": stores.address, "budget": ledger.address}
        addresses["policy"] = ledger.address
        yield Suite("smoke", started, secret, started[-1].address, addresses)
    finally:
        for process in started:
            if process.process is not None and process.process.poll() is None:
                chaos.thaw(process)
            process.stop()


def in_flight_during(outcomes: list[Outcome], start: float, end: float) -> list[Outcome]:
    return [o for o in outcomes if o.started < end and o.started + o.seconds > start]


def recovered_after(outcomes: list[Outcome], cleared: float) -> float | None:
    ends = [o.started + o.seconds for o in outcomes if o.ok and o.started >= cleared]
    return min(ends) - cleared if ends else None


@pytest.mark.slow
async def test_the_suite_fails_fast_recovers_by_itself_and_loses_nothing_acknowledged(suite: Suite) -> None:
    stores, ledger, _ = suite.processes
    load = Load(suite, users=6, concurrency=4)
    stop = asyncio.Event()
    running = asyncio.create_task(load.run(stop))
    try:
        await asyncio.sleep(1.0)
        killed = time.monotonic()
        chaos.crash(stores)
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(chaos.restart, stores)
        restarted = time.monotonic()
        await asyncio.sleep(1.5)
        frozen = time.monotonic()
        chaos.freeze(ledger)
        await asyncio.sleep(2.5)
        chaos.thaw(ledger)
        thawed = time.monotonic()
        await asyncio.sleep(1.5)
    finally:
        chaos.thaw(ledger)
        await stop_load(running, stop)

    outcomes = load.outcomes
    failed = [o for o in outcomes if not o.ok]
    assert {o.code for o in failed} <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}, {o.code: o.detail for o in failed}
    assert max((o.seconds for o in failed), default=0.0) <= RUN_TIMEOUT_S + 1.5, "a failing run outlived its deadline"
    killed_calls = in_flight_during(outcomes, killed, restarted)
    assert any(o.code == "UNAVAILABLE" for o in killed_calls), "the crash was noticed (or the check is vacuous)"
    frozen_calls = in_flight_during(outcomes, frozen, thawed)
    assert any(o.code == "DEADLINE_EXCEEDED" for o in frozen_calls), "the freeze outlasted the call deadline"
    for name, cleared in (("restart", restarted), ("thaw", thawed)):
        recovery = recovered_after(outcomes, cleared)
        assert recovery is not None, f"no run succeeded after the {name}"
        assert recovery <= RECOVERY_BOUND_S, f"runs succeeded again only {recovery:.1f} s after the {name}"

    writes = await lost_writes(suite, load)
    assert writes["acknowledged_runs"] > 0
    assert writes["lost_memory_writes"] == 0, writes
    assert writes["lost_audit_writes"] == 0, writes
    verified = await audit_verifies(suite)
    assert verified["audit_verifies"], verified
    ledger_state = await budget_after_ttl(suite, load, TTL_S)
    assert ledger_state["reservations_outstanding_after_ttl"] == 0, ledger_state
    assert ledger_state["acknowledged_charges_missing"] == 0, ledger_state
