"""Noisy neighbour: the other tenants' latency while one tenant floods the Agent, without and with
per-tenant limits (``--rate-limit-per-user``, ``--rate-burst``, ``--max-inflight-per-user``) and the
Agent's fair run slots (``--run-slots``: beyond each tenant's first run, at most that many runs execute
at once, a freed slot going to the waiting tenant running the fewest; see agent/run/slots.py).

    python -m bench noisy_neighbour         # about 2 minutes; JSON + PNG in bench/results/noisy_neighbour.*

Every service runs in its own process (the production shape). Quiet tenants send
runs open-loop at a fixed rate each (a run starts on schedule whether or not the
previous one finished, so queueing shows in their latency instead of hiding in a
slower client). One noisy tenant floods with many runs in flight at once, in two
styles: *hostile* (ignores refusals and retries at once) and *polite* (waits
the ``RetryInfo`` delay each refusal carries). Scenarios, each measured for
``--seconds``:

1. limits off, quiet tenants alone (the baseline);
2. limits off, plus the hostile flood;
3. limits on, quiet tenants alone;
4. limits on, plus the hostile flood;
5. limits on, plus the polite flood;
6. limits on, plus a *tools* flood: the polite flood, each run calling the
   calculator bomb ``((9**999)**999)**8`` (allowed by the default policy). Every
   admitted run is a hostile tool call, so this isolates what tool calls cost
   the others (the polite flood alone is case 5).

The summary puts side by side, from the same run, the quiet tenants' p99 alone
(case 3) and under each flood with limits on, with the ratio of each to case 3,
and each process's CPU use per scenario (the Agent, its tool workers, each
service and this client), so a slower quiet p99 can be traced to the work that
caused it; the machine's load average is recorded at each scenario's start and
end, because a shared machine's other work shows up in every latency here.

Exits non-zero when, with limits on, a quiet tenant was refused or saw an error,
the flood raised the quiet tenants' p99 more than it did without limits, or the
tools flood took the quiet tenants' p99 past twice their quiet value (case 3).

Besides the p99 of every quiet run, each scenario reports the quiet p99 of the runs
started after the flood's first second (``quiet_p99_after_first_s_ms``): the first
second holds the flood's opening burst (every flooder's first call at once, and the
burst its bucket allows), so the two tell a start-up spike from a steady cost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from bench.harness import latency_stats, plot_path, write_results
from bench.topology import Suite, start_suite
from loomflow.v1 import agent_pb2, agent_pb2_grpc, tenancy_pb2

Metadata = tuple[tuple[str, str], ...]


@dataclass
class Tally:
    latencies_s: list[float] = field(default_factory=list)
    started_s: list[float] = field(default_factory=list)
    """When each run of ``latencies_s`` started (``time.monotonic()``)."""
    codes: Counter[str] = field(default_factory=Counter)


def retry_delay(error: grpc.aio.AioRpcError) -> float:
    """The RetryInfo delay a refusal carries (0 when it carries none)."""
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        for detail in status_pb2.Status.FromString(value if isinstance(value, bytes) else value.encode()).details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return 0.0


HOSTILE_TOOL_CALL = '/call calculator {"expression": "((9**999)**999)**8"}'
"""Held the Agent's CPU (and every tenant's runs) for ~6 s before tools were bounded and isolated."""


def request(user: str, tool_call: str = "") -> agent_pb2.RunRequest:
    prompt = f"note {secrets.token_hex(4)} for {user}" + (f"\n{tool_call}" if tool_call else "")
    return agent_pb2.RunRequest(
        scope=tenancy_pb2.UserScope(user_id=user), options=agent_pb2.RunOptions(prompt=prompt, session_id="s")
    )


async def one_run(agent: agent_pb2_grpc.AgentServiceAsyncStub, user: str, token: Metadata, tally: Tally) -> None:
    began, started = time.monotonic(), time.perf_counter()
    try:
        await agent.Run(request(user), metadata=token, timeout=30)
    except grpc.aio.AioRpcError as error:
        tally.codes[error.code().name] += 1
        return
    tally.latencies_s.append(time.perf_counter() - started)
    tally.started_s.append(began)
    tally.codes["OK"] += 1


async def quiet_tenant(
    agent: agent_pb2_grpc.AgentServiceAsyncStub, user: str, token: Metadata, rate: float, until: float, tally: Tally
) -> None:
    """Open loop: one run every 1/rate seconds, each on its own, for as long as the scenario lasts."""
    pending: set[asyncio.Task[None]] = set()
    next_start = time.monotonic() + secrets.randbelow(1000) / 1000 / rate  # tenants out of phase
    while next_start < until:
        await asyncio.sleep(max(0.0, next_start - time.monotonic()))
        task = asyncio.create_task(one_run(agent, user, token, tally))
        pending.add(task)
        task.add_done_callback(pending.discard)
        next_start += 1 / rate
    await asyncio.gather(*pending)


async def flooder(
    agent: agent_pb2_grpc.AgentServiceAsyncStub,
    user: str,
    token: Metadata,
    polite: bool,
    until: float,
    tally: Tally,
    tool_call: str = "",
) -> None:
    """Closed loop with no think time: the next run starts the moment the last one answered."""
    while time.monotonic() < until:
        began, started = time.monotonic(), time.perf_counter()
        try:
            await agent.Run(request(user, tool_call), metadata=token, timeout=30)
        except grpc.aio.AioRpcError as error:
            tally.codes[error.code().name] += 1
            if polite and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                # Waits as told, but not past the scenario's end (the next scenario starts then).
                await asyncio.sleep(min(retry_delay(error), max(0.0, until - time.monotonic())))
            continue
        tally.latencies_s.append(time.perf_counter() - started)
        tally.started_s.append(began)
        tally.codes["OK"] += 1


class CpuMeter:
    """CPU seconds each process of the suite (the Agent's tool workers apart) and this client used."""

    def __init__(self, suite: Suite) -> None:
        import psutil

        self._roles = {p.process.pid: p.services for p in suite.processes if p.process is not None}
        self._psutil = psutil
        self._start = self._read()

    def _read(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for pid, role in self._roles.items():
            try:
                process = self._psutil.Process(pid)
                times = process.cpu_times()
                used[role] = times.user + times.system
                workers = 0.0
                for child in process.children(recursive=True):  # tool workers come and go: count the live ones
                    child_times = child.cpu_times()
                    workers += child_times.user + child_times.system
                used[f"{role} tool workers"] = workers + times.children_user + times.children_system
            except self._psutil.Error:
                continue
        me = self._psutil.Process(os.getpid()).cpu_times()
        used["bench client"] = me.user + me.system
        return used

    def percent(self, wall_s: float) -> dict[str, float]:
        """Per process, the CPU used since this meter started, as a percentage of one core over ``wall_s``."""
        end = self._read()
        shares = {role: (end[role] - self._start.get(role, 0.0)) / wall_s * 100 for role in end}
        return {role: round(share, 1) for role, share in shares.items() if share >= 0.05 or "workers" not in role}


async def scenario(suite: Suite, args: argparse.Namespace, flood: str | None) -> dict[str, Any]:
    quiet_users = [f"quiet-{secrets.token_hex(3)}-{n}" for n in range(args.quiet_users)]
    noisy = f"noisy-{secrets.token_hex(3)}"
    tokens = {u: (("authorization", f"Bearer {suite.user_token(u)}"),) for u in [*quiet_users, noisy]}
    quiet, loud = Tally(), Tally()
    options = [("grpc.max_concurrent_streams", 1000)]
    async with (
        grpc.aio.insecure_channel(suite.agent_address, options=options) as quiet_channel,
        grpc.aio.insecure_channel(suite.agent_address, options=options) as loud_channel,
    ):
        quiet_agent = agent_pb2_grpc.AgentServiceStub(quiet_channel)
        loud_agent = agent_pb2_grpc.AgentServiceStub(loud_channel)
        for user in quiet_users:  # warm: channels, per-tenant state
            await one_run(quiet_agent, user, tokens[user], Tally())
        load_before = os.getloadavg()[0]
        cpu = CpuMeter(suite)
        started = time.monotonic()
        until = started + args.seconds
        work = [quiet_tenant(quiet_agent, u, tokens[u], args.quiet_rate, until, quiet) for u in quiet_users]
        if flood is not None:
            tool_call = HOSTILE_TOOL_CALL if flood == "tools" else ""
            work += [
                flooder(loud_agent, noisy, tokens[noisy], flood != "hostile", until, loud, tool_call)
                for _ in range(args.flood_concurrency)
            ]
        await asyncio.gather(*work)
        wall = time.monotonic() - started
        cpu_percent = cpu.percent(wall)
    stats = latency_stats(quiet.latencies_s, wall)
    settled = [lat for lat, at in zip(quiet.latencies_s, quiet.started_s, strict=True) if at >= started + 1.0]
    return {
        "load_average_1m": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
        "cpu_percent_of_one_core": cpu_percent,
        "flood": flood or "none",
        "quiet_tenants": args.quiet_users,
        "quiet_runs_per_second_offered": args.quiet_users * args.quiet_rate,
        "quiet": stats.as_dict(),
        "quiet_p99_after_first_s_ms": latency_stats(settled, wall - 1.0).as_dict()["p99_ms"] if settled else None,
        "quiet_codes": dict(quiet.codes),
        "noisy_codes": dict(loud.codes),
        "noisy_ok_per_second": round(loud.codes["OK"] / wall, 1),
        "noisy_refused_per_second": round(loud.codes["RESOURCE_EXHAUSTED"] / wall, 1),
    }


def plot(results: list[dict[str, Any]], name: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"limits {r['limits']}\nflood: {r['flood']}" for r in results]
    p50 = [r["quiet"]["p50_ms"] for r in results]
    p99 = [r["quiet"]["p99_ms"] for r in results]
    xs = range(len(results))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.bar([x - 0.2 for x in xs], p50, width=0.4, label="quiet tenants p50")
    ax.bar([x + 0.2 for x in xs], p99, width=0.4, label="quiet tenants p99")
    for x, r in zip(xs, results, strict=True):
        ax.text(x, max(p99) * 1.02, f"noisy OK {r['noisy_ok_per_second']}/s", ha="center", fontsize=7)
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel("ms per agent run")
    ax.set_title("Quiet tenants' latency while one tenant floods the Agent")
    ax.legend()
    fig.tight_layout()
    path = plot_path(name)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def limits_env(args: argparse.Namespace) -> dict[str, str]:
    return {
        "LOOMFLOW_RATE_LIMIT_PER_USER": str(args.rate_limit_per_user),
        "LOOMFLOW_RATE_BURST": str(args.rate_burst),
        "LOOMFLOW_MAX_INFLIGHT_PER_USER": str(args.max_inflight_per_user),
        "LOOMFLOW_AGENT_RUN_SLOTS": str(args.run_slots),
    }


async def main_async(args: argparse.Namespace) -> int:
    results: list[dict[str, Any]] = []
    plan = [("off", {}, [None, "hostile"]), ("on", limits_env(args), [None, "hostile", "polite", "tools"])]
    if args.only:
        wanted = {tuple(item.split(":")) for item in args.only.split(",")}
        plan = [(lim, env, [f for f in floods if (lim, f or "none") in wanted]) for lim, env, floods in plan]
        plan = [step for step in plan if step[2]]
    for limits, env, floods in plan:
        suite = start_suite("per-service", extra_env=env)
        try:
            for flood in floods:
                print(f"limits {limits}, flood {flood or 'none'}", file=sys.stderr)
                results.append({"limits": limits, **await scenario(suite, args, flood)})
        finally:
            suite.stop()
    by = {(r["limits"], r["flood"]): r for r in results}
    failures: list[str] = []
    for flood in ("hostile", "polite", "tools"):
        quiet_codes = by[("on", flood)]["quiet_codes"] if ("on", flood) in by else {}
        if set(quiet_codes) - {"OK"}:
            failures.append(f"limits on, {flood} flood: quiet tenants saw {quiet_codes}")
    p99 = {key: r["quiet"]["p99_ms"] for key, r in by.items()}
    rise_off = rise_on = None
    if {("off", "none"), ("off", "hostile"), ("on", "none"), ("on", "hostile")} <= set(p99):
        rise_off = p99[("off", "hostile")] - p99[("off", "none")]
        rise_on = p99[("on", "hostile")] - p99[("on", "none")]
        if rise_on >= rise_off:
            failures.append(f"the limits did not help: p99 rose {rise_on:.1f} ms with them, {rise_off:.1f} ms without")
    tools_ratio = None
    tools_vs_polite = (
        p99[("on", "tools")] / p99[("on", "polite")] if {("on", "tools"), ("on", "polite")} <= set(p99) else None
    )
    if {("on", "none"), ("on", "tools")} <= set(p99) and p99[("on", "none")] > 0:
        tools_ratio = p99[("on", "tools")] / p99[("on", "none")]
        if tools_ratio > 2:
            failures.append(
                f"hostile tool calls took the quiet p99 to {p99[('on', 'tools')]:.1f} ms, "
                f"over 2x {p99[('on', 'none')]:.1f} ms"
            )
    quiet_p99 = p99.get(("on", "none"))
    side_by_side = [
        {
            "flood": flood,
            "quiet_p99_ms": p99[("on", flood)],
            "vs_quiet": round(p99[("on", flood)] / quiet_p99, 2) if quiet_p99 else None,
            "noisy_refused_per_second": by[("on", flood)]["noisy_refused_per_second"],
            "noisy_ok_per_second": by[("on", flood)]["noisy_ok_per_second"],
            "quiet_p99_after_first_s_ms": by[("on", flood)]["quiet_p99_after_first_s_ms"],
            "load_average_1m": by[("on", flood)]["load_average_1m"],
        }
        for flood in ("none", "polite", "tools", "hostile")
        if ("on", flood) in p99
    ]
    path = write_results(
        args.results_name,
        {
            "topology": "per-service",
            "limits": {k.removeprefix("LOOMFLOW_").lower(): v for k, v in limits_env(args).items()},
            "flood_concurrency": args.flood_concurrency,
            "scenarios": results,
            # Limits on: the quiet tenants' p99 alone and under each flood, measured in this one run.
            "limits_on_quiet_p99": side_by_side,
            "quiet_p99_rise_ms": {"limits_off": rise_off, "limits_on": rise_on},
            "tools_flood_quiet_p99_vs_quiet": round(tools_ratio, 2) if tools_ratio is not None else None,
            # What the hostile tool calls add over the same polite flood without them.
            "tools_flood_quiet_p99_vs_polite_flood": round(tools_vs_polite, 2) if tools_vs_polite else None,
            "failures": failures,
            "passed": not failures,
        },
    )
    picture = plot(results, args.results_name)
    print(f"results: {path}\nplot: {picture}", file=sys.stderr)
    for r in results:
        q = r["quiet"]
        print(
            f"limits {r['limits']:<3} flood {r['flood']:<8} "
            f"quiet p50 {q['p50_ms']:7.1f} ms  p99 {q['p99_ms']:7.1f} ms  "
            f"quiet codes {r['quiet_codes']}  noisy OK/s {r['noisy_ok_per_second']}  "
            f"refused/s {r['noisy_refused_per_second']}"
        )
    print("\nlimits on, quiet tenants' p99 alone and under each flood (this run):")
    for row in side_by_side:
        ratio = f"{row['vs_quiet']:.2f}x" if row["vs_quiet"] is not None else "-"
        load = row["load_average_1m"]
        print(
            f"  {row['flood']:<8} p99 {row['quiet_p99_ms']:7.1f} ms  {ratio:>6} of alone  "
            f"(after 1 s: {row['quiet_p99_after_first_s_ms'] or 0:7.1f} ms)  "
            f"noisy OK/s {row['noisy_ok_per_second']:5.1f}  "
            f"refused/s {row['noisy_refused_per_second']:7.1f}  load {load['start']:.1f}->{load['end']:.1f}"
        )
    for r in results:
        busy = ", ".join(f"{role} {share:.0f}%" for role, share in r["cpu_percent_of_one_core"].items())
        print(f"  CPU, limits {r['limits']} flood {r['flood']}: {busy}")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each scenario")
    parser.add_argument("--quiet-users", type=int, default=8, help="well-behaved tenants")
    parser.add_argument("--quiet-rate", type=float, default=3.0, help="runs per second each quiet tenant starts")
    parser.add_argument("--flood-concurrency", type=int, default=64, help="runs the noisy tenant keeps in flight")
    parser.add_argument("--rate-limit-per-user", type=float, default=10.0, help="limit under test (runs/s)")
    parser.add_argument("--rate-burst", type=int, default=20, help="limit under test (burst)")
    parser.add_argument("--max-inflight-per-user", type=int, default=4, help="limit under test (runs in flight)")
    parser.add_argument(
        "--run-slots",
        type=int,
        default=os.cpu_count() or 2,
        help="limit under test: the Agent's run slots beyond each tenant's first run (0: off; default: the CPUs)",
    )
    parser.add_argument("--results-name", default="noisy_neighbour", help="bench/results/<name>.json and .png")
    parser.add_argument(
        "--only", default="", help="scenarios to run, as limits:flood pairs, e.g. on:none,on:polite,on:tools (all)"
    )
    return asyncio.run(main_async(parser.parse_args()))
