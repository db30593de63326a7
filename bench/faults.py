"""Fault injection under multi-tenant load: every service its own process, real Postgres and Redis.

    python -m bench faults                  # about 3 minutes; JSON + PNG in bench/results/faults.*

While N tenants keep the Agent busy, each fault is injected in turn, held, and
cleared: kill -9 of each of the five services (then a restart on the same
port), a crash-restart of Postgres (``pg_ctl restart -m immediate``) and of Redis
(kill -9, then restart from its append-only file), and a dependency slower than
any deadline (SIGSTOP of Memory, then of Budget, then SIGCONT). The backends
are a private Postgres and Redis (scripts/services.sh in a temporary folder),
never the shared ones. Everything runs on loopback.

It then checks, and exits non-zero when any check fails:

* every call ended with OK, UNAVAILABLE or DEADLINE_EXCEEDED, within the run's
  own deadline (no call ever reached the client's 30 s deadline: nothing hung);
* after each fault was cleared the suite served OK runs again by itself, within
  ``--recovery-bound`` seconds, without restarting anything else;
* zero acknowledged memory or audit writes lost (every OK run's episode and
  audit entries read back), and no acknowledged budget charge missing;
* no budget reservation outstanding once its TTL has passed;
* every tenant's audit chain (and the signed checkpoint) verifies.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench import chaos
from bench.fault_load import (
    Load,
    Outcome,
    audit_verifies,
    budget_after_ttl,
    lost_writes,
    stop_load,
    summarise,
)
from bench.harness import argument_parser, plot_path, verdict, write_results
from bench.topology import INTERNAL, Suite, start_suite

EXPECTED_FAILURES = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
RUN_TIMEOUT_MS = 8000
CALL_TIMEOUT_MS = 2000
TTL_MARGIN_S = 5.0  # the Agent's reservation TTL = the run's deadline + 5 s (agent/run/settlement.py)


@dataclass
class Fault:
    name: str
    inject: Callable[[], None]
    clear: Callable[[], None]


@dataclass
class PhaseResult:
    name: str
    injected_at: float
    cleared_at: float
    recovered_after_s: float | None
    during: dict[str, Any]
    after: dict[str, Any]

    def as_dict(self, origin: float) -> dict[str, Any]:
        return {
            "fault": self.name,
            "injected_at_s": round(self.injected_at - origin, 2),
            "held_s": round(self.cleared_at - self.injected_at, 2),
            "recovered_after_s": None if self.recovered_after_s is None else round(self.recovered_after_s, 2),
            "during_fault": self.during,
            "after_clear": self.after,
        }


def faults(suite: Suite, backends: chaos.PrivateBackends, hold_s: float) -> list[Fault]:
    by_name = {p.services: p for p in suite.processes}

    def held(action: Callable[[], None]) -> Callable[[], None]:
        def inject() -> None:
            action()
            time.sleep(hold_s)

        return inject

    def nothing() -> None:
        """Postgres' restart is the whole fault: it is back when pg_ctl returns."""

    found = [
        Fault(f"kill -9 {name}", held(partial(chaos.crash, by_name[name])), partial(chaos.restart, by_name[name]))
        for name in (*INTERNAL, "agent")
    ]
    found.append(Fault("Postgres crash + restart", backends.restart_postgres, nothing))
    found.append(Fault("Redis kill -9 + restart", held(backends.crash_redis), backends.start_redis))
    found.extend(
        Fault(
            f"{name} frozen past the deadline (SIGSTOP)",
            held(partial(chaos.freeze, by_name[name])),
            partial(chaos.thaw, by_name[name]),
        )
        for name in ("memory", "budget")
    )
    return found


async def run_phase(load: Load, fault: Fault, settle_s: float) -> PhaseResult:
    injected = time.monotonic()
    await asyncio.to_thread(fault.inject)
    await asyncio.to_thread(fault.clear)
    cleared = time.monotonic()
    await asyncio.sleep(settle_s)
    # Every call in flight at any moment of the fault, including those it caught half-way.
    during = [o for o in load.outcomes if o.started < cleared and o.started + o.seconds > injected]
    after = [o for o in load.outcomes if o.started >= cleared]
    first_ok = min((o.started + o.seconds for o in after if o.ok), default=None)
    return PhaseResult(
        fault.name,
        injected,
        cleared,
        None if first_ok is None else first_ok - cleared,
        summarise(during),
        summarise(after),
    )


def check(report: dict[str, Any], outcomes: list[Outcome], recovery_bound_s: float) -> list[str]:
    failures: list[str] = []
    unexpected = {o.code for o in outcomes if not o.ok} - EXPECTED_FAILURES
    if unexpected:
        failures.append(f"codes other than UNAVAILABLE/DEADLINE_EXCEEDED: {sorted(unexpected)}")
    bound = RUN_TIMEOUT_MS / 1000 + 2.0
    slow = [o for o in outcomes if not o.ok and o.seconds > bound]
    if slow:
        failures.append(
            f"{len(slow)} failed calls took longer than {bound} s (max {max(o.seconds for o in slow):.1f} s)"
        )
    hung = sum(p["during_fault"]["hung_calls"] + p["after_clear"]["hung_calls"] for p in report["phases"])
    if hung:
        failures.append(f"{hung} calls hung until the client's deadline")
    for phase in report["phases"]:
        recovered = phase["recovered_after_s"]
        if recovered is None or recovered > recovery_bound_s:
            failures.append(f"{phase['fault']}: no OK run within {recovery_bound_s} s of clearing it ({recovered})")
    data = report["data"]
    for key in (
        "lost_memory_writes",
        "lost_audit_writes",
        "reservations_outstanding_after_ttl",
        "acknowledged_charges_missing",
    ):
        if data[key]:
            failures.append(f"{key} = {data[key]}")
    if not data["audit_verifies"]:
        failures.append(f"audit does not verify: {data['bad_chains']} {data['checkpoint_error']}")
    if not data["acknowledged_runs"]:
        failures.append("no run was acknowledged: the checks above are vacuous")
    return failures


def plot(report: dict[str, Any], outcomes: list[Outcome], origin: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = plot_path("faults")
    bins: dict[int, list[int]] = {}
    for o in outcomes:
        slot = int((o.started - origin) * 2)
        bins.setdefault(slot, [0, 0])[0 if o.ok else 1] += 1
    xs = sorted(bins)
    fig, ax = plt.subplots(figsize=(13, 4.5))
    ax.bar([x / 2 for x in xs], [bins[x][0] * 2 for x in xs], width=0.5, color="tab:green", label="OK runs/s")
    ax.bar(
        [x / 2 for x in xs],
        [bins[x][1] * 2 for x in xs],
        width=0.5,
        bottom=[bins[x][0] * 2 for x in xs],
        color="tab:red",
        label="UNAVAILABLE / DEADLINE_EXCEEDED /s",
    )
    top = max((sum(v) * 2 for v in bins.values()), default=1)
    for phase in report["phases"]:
        start, held = phase["injected_at_s"], phase["held_s"]
        ax.axvspan(start, start + held, color="grey", alpha=0.2)
        ax.text(start + 0.2, top * 1.3, phase["fault"], rotation=90, fontsize=7, va="top")
    ax.set_xlabel("seconds")
    ax.set_ylabel("runs started per second")
    data = report["data"]
    lost = data["lost_memory_writes"] + data["lost_audit_writes"]
    ax.set_title(f"Agent runs under faults (grey: fault held); {data['acknowledged_runs']} acknowledged, {lost} lost")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_ylim(0, top * 1.35)  # room for the labels above the bars
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


async def main_async(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="loomflow-faults-"))
    backends = chaos.PrivateBackends(root)
    print(f"private Postgres and Redis in {root}", file=sys.stderr)
    backends.start()
    suite: Suite | None = None
    try:
        env = {
            "LOOMFLOW_MEMORY_DSN": backends.postgres_dsn,
            "LOOMFLOW_AUDIT_DSN": backends.postgres_dsn,
            "LOOMFLOW_POLICY_DSN": backends.postgres_dsn,
            "LOOMFLOW_BUDGET_DSN": backends.redis_url,
            "LOOMFLOW_BUDGET_USER_LIMITS": "total_tokens=1000000000000",  # so GetStatus reports what is held
            "LOOMFLOW_AGENT_TIMEOUT_MS": str(RUN_TIMEOUT_MS),
            "LOOMFLOW_AGENT_CALL_TIMEOUT_MS": str(CALL_TIMEOUT_MS),
            "LOOMFLOW_AUDIT_CHECKPOINT_INTERVAL": "2",
        }
        suite = start_suite("per-service", root / "suite", env)
        load = Load(suite, args.users, args.concurrency)
        stop = asyncio.Event()
        origin = time.monotonic()
        task = asyncio.create_task(load.run(stop))
        await asyncio.sleep(args.warmup)
        baseline = summarise([o for o in load.outcomes if o.started >= origin])
        phases: list[PhaseResult] = []
        for fault in faults(suite, backends, args.hold):
            print(f"fault: {fault.name}", file=sys.stderr)
            phases.append(await run_phase(load, fault, args.settle))
        await stop_load(task, stop)
        print("checking what was acknowledged", file=sys.stderr)
        ttl_s = RUN_TIMEOUT_MS / 1000 + 1.0 + TTL_MARGIN_S
        data = {
            **await lost_writes(suite, load),
            **await budget_after_ttl(suite, load, ttl_s),
            **await audit_verifies(suite),
        }
        report: dict[str, Any] = {
            "topology": "per-service (5 processes), memory/audit/policy on Postgres, budget on Redis (AOF always)",
            "users": args.users,
            "concurrency": args.concurrency,
            "run_timeout_ms": RUN_TIMEOUT_MS,
            "call_timeout_ms": CALL_TIMEOUT_MS,
            "baseline": baseline,
            "phases": [p.as_dict(origin) for p in phases],
            "data": data,
            "totals": summarise(load.outcomes),
        }
        failures = check(report, load.outcomes, args.recovery_bound)
        report["failures"] = failures
        report["passed"] = not failures
        path = write_results("faults", report)
        picture = plot(report, load.outcomes, origin)
        print(f"results: {path}\nplot: {picture}", file=sys.stderr)
        for phase in report["phases"]:
            during = phase["during_fault"]
            print(
                f"{phase['fault']:<42} held {phase['held_s']:>5.1f}s  calls {during['calls']:>4}  "
                f"codes {during['codes']}  max failed {during['max_failed_call_s']}s  "
                f"recovered after {phase['recovered_after_s']}s"
            )
        print(
            f"acknowledged runs {data['acknowledged_runs']}: lost memory writes {data['lost_memory_writes']}, "
            f"lost audit writes {data['lost_audit_writes']}, "
            f"holds after TTL {data['reservations_outstanding_after_ttl']}, "
            f"audit verifies {data['audit_verifies']}"
        )
        return verdict(failures, "FAILED")
    finally:
        if suite is not None:
            for process in suite.processes:
                if process.process is not None and process.process.poll() is None:
                    chaos.thaw(process)  # a frozen process cannot drain
            suite.stop()
        backends.stop()


def main() -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--users", type=int, default=24, help="tenants sending runs")
    parser.add_argument("--concurrency", type=int, default=8, help="runs in flight at once")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds of load before the first fault")
    parser.add_argument("--hold", type=float, default=4.0, help="seconds each fault is held")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of load after each fault is cleared")
    parser.add_argument(
        "--recovery-bound", type=float, default=10.0, help="seconds within which runs must succeed again"
    )
    return asyncio.run(main_async(parser.parse_args()))
