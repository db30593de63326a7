"""The race: the same multi-tenant workload through the in-process framework and through
our networked suite, side by side in one run on one machine.

    python -m bench race                       # 250, 500, 1,000 and 4,000 users × 5 turns, concurrency 64
    python -m bench race --users 250,500 --turns 3
    python -m bench race --users 500 --turns 3 --profile 20   # and py-spy samples of each server process

The framework (`loomflow==0.20.0` from PyPI: echo model, InMemoryMemory, StandardBudget,
FileAuditLog) shares our import name, so it runs in its own virtualenv
(bench/.venv-framework, created on first use). Ours runs in both topologies. Reported:
turns/s, p50/p99, RSS per tenant and the ratios; plus unloaded latency (one user at a time).
The run judges issue 24's targets (`targets` in the JSON: required, measured, met, and by how
much a missed one misses). With --profile, py-spy samples every server process during the first
users point and bench/results/race_profile.json says where their CPU goes (bench/race/profile.py).
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

from bench.harness import REPO, RESULTS, latency_stats, plot_path, resident_kib, write_results
from bench.race import profile
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
        "cpu_ms_per_turn": round(1e3 * raw["cpu_seconds"] / max(len(raw["latencies_s"]), 1), 3),
        "rss_anon_kb_per_tenant": round((raw["rss_anon_kib_after"] - raw["rss_anon_kib_before"]) / users, 3),
        "processes": 1,
    }


def our_lane(
    topology: str, users: int, turns: int, concurrency: int, profile_s: float = 0.0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The lane's figures, and (with ``profile_s``) where its processes' CPU went.

    CPU per turn counts every server process and this process (the load's client) over the measured
    phase only: the machine's cost of a turn, which load on the machine does not inflate as it does wall time.
    """
    import psutil

    suite = start_suite(topology)
    servers = [psutil.Process(pid) for pid in suite.pids()]
    client = psutil.Process()
    cpu_marks: list[tuple[float, float]] = []
    anonymous: list[int] = []

    def sample_rss() -> int:
        """RSS over all the suite's processes (what the target judges); their anonymous part and the CPU so far
        (the servers', this process's) on the side."""
        cpu_marks.append((sum(_cpu(p) for p in servers), _cpu(client)))
        usage = [resident_kib(pid) for pid in suite.pids()]
        anonymous.append(sum(u["anon"] for u in usage))
        return sum(u["rss"] for u in usage)

    samplers = []
    if profile_s > 0:
        pids = {p.services.replace(",", "+"): p.process.pid for p in suite.processes if p.process is not None}
        samplers = profile.start(pids, profile_s, Path("/tmp") / f"loomflow-race-profile-{topology}")
    try:
        result = asyncio.run(
            run_workload(
                suite,
                users,
                turns,
                concurrency,
                phases=1,
                sample_rss=sample_rss,
            )
        )
    finally:
        profiled = profile.finish(samplers)
        suite.stop()
    stats = latency_stats(result.latencies_s, result.wall_seconds)
    (_, before), (_, after) = result.rss_samples[0], result.rss_samples[-1]
    (server_before, client_before), (server_after, client_after) = cpu_marks[0], cpu_marks[-1]
    measured_turns = max(result.turns, 1)
    server_cpu, client_cpu = server_after - server_before, client_after - client_before
    return {
        "turns_per_second": round(stats.per_second, 1),
        "p50_ms": round(stats.p50_ms, 3),
        "p99_ms": round(stats.p99_ms, 3),
        "rss_kb_per_tenant": round((after - before) / users, 3),
        "cpu_ms_per_turn": round(1e3 * (server_cpu + client_cpu) / measured_turns, 3),
        "server_cpu_ms_per_turn": round(1e3 * server_cpu / measured_turns, 3),
        "rss_anon_kb_per_tenant": round((anonymous[-1] - anonymous[0]) / users, 3),
        "processes": len(suite.processes),
        "errors": len(result.errors),
        "isolation_violations": len(result.isolation_violations),
        "budget_mismatches": len(result.budget_mismatches),
    }, profiled


def _cpu(process: Any) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def unloaded(topology: str, turns: int) -> dict[str, float]:
    """One user at a time: the latency of a turn through all five services with no queueing."""
    suite = start_suite(topology)
    try:
        result = asyncio.run(run_workload(suite, users=turns, turns=1, concurrency=1, phases=1))
    finally:
        suite.stop()
    stats = latency_stats(result.latencies_s[10:], result.wall_seconds)  # drop connection warm-up
    return {"p50_ms": round(stats.p50_ms, 3), "p99_ms": round(stats.p99_ms, 3)}


def judge(points: list[dict[str, Any]], scaling: dict[str, float], alone: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 24's targets against this run: each with what it needs, what was measured and by how much it misses."""
    at_500 = min(points, key=lambda p: abs(p["users"] - 500))
    largest = points[-1]
    targets: list[dict[str, Any]] = []

    def add(name: str, required: float, measured: float, higher_is_better: bool, unit: str) -> None:
        met = measured >= required if higher_is_better else measured <= required
        factor = (required / measured if higher_is_better else measured / required) if measured else float("inf")
        targets.append(
            {
                "target": name,
                "required": required,
                "measured": round(measured, 3),
                "unit": unit,
                "higher_is_better": higher_is_better,
                "met": met,
                "missed_by": None if met else f"{factor:.2f}x ({'below' if higher_is_better else 'above'} the target)",
            }
        )

    versus = f"turns/s over the framework's at {at_500['users']} users"
    add(f"one process {versus}", 1.0, at_500["ratio_one-process"], True, "x")
    add(f"per service {versus}", 0.75, at_500["ratio_per-service"], True, "x")
    add("unloaded turn p50, one process", 1.5, alone["one-process"]["p50_ms"], False, "ms")
    add("unloaded turn p50, per service", 2.5, alone["per-service"]["p50_ms"], False, "ms")
    for lane in TOPOLOGIES:
        rss = largest[lane]["rss_kb_per_tenant"]
        add(f"RSS per tenant at {largest['users']} users, {lane}", 15.0, rss, False, "KB")
        if len(points) > 1:
            flat = f"throughput at {largest['users']} over {points[0]['users']} users, {lane}"
            add(flat, 0.9, scaling[lane], True, "x")
    return targets


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
    parser.add_argument(
        "--profile", type=float, default=0.0, help="seconds of py-spy samples per server process, first users point"
    )
    args = parser.parse_args(argv)
    # First, on a quiet machine: right after the loaded lanes (thousands of tenants' logs and
    # databases being written back, processes exiting) one-at-a-time latencies measure the
    # machine's leftovers too (2026-11-24: several tenths of a ms more per service).
    print(f"race: unloaded latency, {args.unloaded_turns} turns one at a time", file=sys.stderr, flush=True)
    latency_alone = {t: unloaded(t, args.unloaded_turns) for t in TOPOLOGIES}
    print(f"race: unloaded {json.dumps(latency_alone)}", file=sys.stderr, flush=True)
    points: list[dict[str, Any]] = []
    profiles: dict[str, Any] = {}
    for users in [int(u) for u in args.users.split(",")]:
        point: dict[str, Any] = {"users": users}
        print(f"race: {users} users × {args.turns} turns: framework", file=sys.stderr, flush=True)
        point["framework"] = framework_lane(users, args.turns, args.concurrency)
        print(f"race: framework: {json.dumps(point['framework'])}", file=sys.stderr, flush=True)
        for topology in TOPOLOGIES:
            print(f"race: {users} users × {args.turns} turns: loomflow {topology}", file=sys.stderr, flush=True)
            profile_s = args.profile if not points else 0.0
            point[topology], profiled = our_lane(topology, users, args.turns, args.concurrency, profile_s)
            print(f"race: {topology}: {json.dumps(point[topology])}", file=sys.stderr, flush=True)
            if profiled:
                profiles[topology] = {"users": users, "processes": profiled}
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
    targets = judge(points, scaling, latency_alone)
    for target in targets:
        verdict = "met" if target["met"] else f"MISSED by {target['missed_by']}"
        print(f"race: {target['target']}: {target['measured']} {target['unit']} ({verdict})", file=sys.stderr)
    if args.profile:
        if not profiles:
            print("race: --profile needs py-spy on PATH (or $PY_SPY): no profile taken", file=sys.stderr)
        else:
            write_results("race_profile", {"lanes": profiles})
            print(f"profile: {RESULTS / 'race_profile.json'}")
    path = write_results(
        "race",
        {
            "targets": targets,
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
