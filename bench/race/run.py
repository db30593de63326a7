"""The race: the same multi-tenant workload through the in-process framework and through
our networked suite, side by side in one run on one machine.

    python -m bench race                       # 250, 500, 1,000 and 4,000 users × 5 turns, concurrency 64
    python -m bench race --users 250,500 --turns 3

The framework (`loomflow==0.20.0` from PyPI: echo model, InMemoryMemory, StandardBudget,
FileAuditLog) shares our import name, so it runs in its own virtualenv
(bench/.venv-framework, created on first use). Ours runs in both topologies. Reported:
turns/s, p50/p99, RSS per tenant and the ratios; plus unloaded latency (one user at a time).
Results: bench/results/race.json and race.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.harness import REPO, latency_stats, plot_path, rss_kib, write_results
from bench.topology import TOPOLOGIES, start_suite
from bench.workload import run_workload

FRAMEWORK = "loomflow==0.20.0"
VENV = REPO / "bench" / ".venv-framework"
LANE = Path(__file__).resolve().parent / "framework_workload.py"


def framework_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"race: creating {VENV} with {FRAMEWORK}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", FRAMEWORK], check=True)
    return python


def framework_lane(users: int, turns: int, concurrency: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            str(framework_python()),
            str(LANE),
            "--users",
            str(users),
            "--turns",
            str(turns),
            "--concurrency",
            str(concurrency),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd="/",  # never import our source tree by accident
    )
    raw = json.loads(out.stdout)
    stats = latency_stats(raw["latencies_s"], raw["wall_seconds"])
    return {
        "turns_per_second": round(stats.per_second, 1),
        "p50_ms": round(stats.p50_ms, 3),
        "p99_ms": round(stats.p99_ms, 3),
        "rss_kb_per_tenant": round((raw["rss_kib_after"] - raw["rss_kib_before"]) / users, 3),
        "processes": 1,
    }


def our_lane(topology: str, users: int, turns: int, concurrency: int) -> dict[str, Any]:
    suite = start_suite(topology)
    try:
        result = asyncio.run(
            run_workload(
                suite,
                users,
                turns,
                concurrency,
                phases=1,
                sample_rss=lambda: sum(rss_kib(pid) for pid in suite.pids()),
            )
        )
    finally:
        suite.stop()
    stats = latency_stats(result.latencies_s, result.wall_seconds)
    (_, before), (_, after) = result.rss_samples[0], result.rss_samples[-1]
    return {
        "turns_per_second": round(stats.per_second, 1),
        "p50_ms": round(stats.p50_ms, 3),
        "p99_ms": round(stats.p99_ms, 3),
        "rss_kb_per_tenant": round((after - before) / users, 3),
        "processes": len(suite.processes),
        "errors": len(result.errors),
        "isolation_violations": len(result.isolation_violations),
        "budget_mismatches": len(result.budget_mismatches),
    }


def unloaded(topology: str, turns: int) -> dict[str, float]:
    """One user at a time: the latency of a turn through all five services with no queueing."""
    suite = start_suite(topology)
    try:
        result = asyncio.run(run_workload(suite, users=turns, turns=1, concurrency=1, phases=1))
    finally:
        suite.stop()
    stats = latency_stats(result.latencies_s[10:], result.wall_seconds)  # drop connection warm-up
    return {"p50_ms": round(stats.p50_ms, 3), "p99_ms": round(stats.p99_ms, 3)}


def plot(points: list[dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = [p["users"] for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for lane in ["framework", *TOPOLOGIES]:
        left.plot(users, [p[lane]["turns_per_second"] for p in points], marker="o", label=lane)
        right.plot(users, [p[lane]["rss_kb_per_tenant"] for p in points], marker="o", label=lane)
    left.set(title="throughput (turns/s), concurrency 64", xlabel="users", xscale="log")
    right.set(title="RSS per tenant (KB, all processes)", xlabel="users", xscale="log")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    path = plot_path("race")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", default="250,500,1000,4000")
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--unloaded-turns", type=int, default=300)
    args = parser.parse_args(argv)
    # First, on a quiet machine: right after the loaded lanes (thousands of tenants' logs and
    # databases being written back, processes exiting) one-at-a-time latencies measured the
    # machine's leftovers too: per service p50 3.44 ms after them, 2.89-2.97 ms on a quiet machine.
    print(f"race: unloaded latency, {args.unloaded_turns} turns one at a time", file=sys.stderr, flush=True)
    latency_alone = {t: unloaded(t, args.unloaded_turns) for t in TOPOLOGIES}
    points: list[dict[str, Any]] = []
    for users in [int(u) for u in args.users.split(",")]:
        point: dict[str, Any] = {"users": users}
        print(f"race: {users} users × {args.turns} turns: framework", file=sys.stderr, flush=True)
        point["framework"] = framework_lane(users, args.turns, args.concurrency)
        for topology in TOPOLOGIES:
            print(f"race: {users} users × {args.turns} turns: loomflow {topology}", file=sys.stderr, flush=True)
            point[topology] = our_lane(topology, users, args.turns, args.concurrency)
            point[f"ratio_{topology}"] = round(
                point[topology]["turns_per_second"] / point["framework"]["turns_per_second"], 3
            )
        print(f"race: {json.dumps(point)}", file=sys.stderr, flush=True)
        points.append(point)
    first, last = points[0], points[-1]
    scaling = {
        lane: round(last[lane]["turns_per_second"] / first[lane]["turns_per_second"], 3)
        for lane in ["framework", *TOPOLOGIES]
    }
    path = write_results(
        "race",
        {
            "framework": FRAMEWORK,
            "turns_per_user": args.turns,
            "concurrency": args.concurrency,
            "points": points,
            "throughput_last_over_first": scaling,
            "unloaded_latency_ms": latency_alone,
        },
    )
    print(json.dumps({"points": points, "scaling": scaling, "unloaded": latency_alone}, indent=2))
    print(f"results: {path}\nplot: {plot(points)}")
    return 0
