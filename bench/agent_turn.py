"""Agent turn latency and throughput through the real services, in both topologies.

    python -m bench agent_turn                      # both topologies, 1,000 sequential turns, concurrency 1/16/64
    python -m bench agent_turn --turns 300 --topologies one-process

Each topology runs as real `loomflow serve` processes in secure mode (bench/topology.py), and
this process is the client (one channel, each user's own token). Measured per topology:

* ``echo``: unloaded latency of a plain turn, one at a time (recall ∥ reserve, echo model,
  commit ∥ append ∥ remember: Agent → Memory, Budget, Audit);
* ``tool``: unloaded latency of a run that calls a tool (``/call calculator``): two model turns,
  a policy check and the write-ahead audit entry as well, so all five services are on the path;
* ``concurrent``: turns/s and latency of plain turns with 16 and 64 in flight;
* ``session``: unloaded latency of a turn in a session that already holds 20 turns and in one
  that holds 10,000 (``--long-session``): the run reads its history with one ListEpisodes page
  bounded by the history limit, so the two should cost about the same (ratio near 1).

Users rotate over ``--users`` tenants. Target: echo turn p50 ≤ 3 ms unloaded, one-process.
Results: bench/results/agent_turn.json and agent_turn.png. The load average is recorded: on a
machine shared with other work the figures are noisy, and the JSON says so.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from bench.harness import argument_parser, latency_stats, plot_path, write_results
from bench.topology import TOPOLOGIES, Suite, start_suite
from loomflow.v1 import agent_pb2, agent_pb2_grpc, memory_pb2, memory_pb2_grpc, tenancy_pb2

TARGET_P50_MS = 3.0

Turn = Callable[[int], Awaitable[float]]


def turn_caller(
    stub: agent_pb2_grpc.AgentServiceAsyncStub,
    suite: Suite,
    users: int,
    prompt: str,
    session: str = "bench",
    prefix: str = "bench",
) -> Turn:
    ids = [f"{prefix}-{i}" for i in range(users)]
    metadata = {u: (("authorization", f"Bearer {suite.user_token(u)}"),) for u in ids}
    scopes = {u: tenancy_pb2.UserScope(user_id=u) for u in ids}

    async def one(i: int) -> float:
        user = ids[i % users]
        request = agent_pb2.RunRequest(
            scope=scopes[user], options=agent_pb2.RunOptions(prompt=prompt.format(i=i), session_id=session)
        )
        started = time.perf_counter()
        reply = await stub.Run(request, metadata=metadata[user], timeout=60)
        elapsed = time.perf_counter() - started
        if reply.interrupted:
            raise RuntimeError(f"turn {i} interrupted: {reply.interruption_reason}")
        return elapsed

    return one


async def sequential(one: Turn, count: int) -> dict[str, Any]:
    for i in range(min(100, count)):  # warm up: connections, caches, first-time paths
        await one(i)
    started = time.perf_counter()
    latencies = [await one(i) for i in range(count)]
    return latency_stats(latencies, time.perf_counter() - started).as_dict()


async def concurrent(one: Turn, count: int, in_flight: int) -> dict[str, Any]:
    gate = asyncio.Semaphore(in_flight)

    async def limited(i: int) -> float:
        async with gate:
            return await one(i)

    started = time.perf_counter()
    latencies = await asyncio.gather(*(limited(i) for i in range(count)))
    return {"in_flight": in_flight, **latency_stats(latencies, time.perf_counter() - started).as_dict()}


async def fill_session(suite: Suite, user: str, session: str, count: int) -> None:
    """Stores ``count`` earlier turns of one session straight into Memory (64 in flight)."""
    metadata = (("authorization", f"Bearer {suite.operator_token()}"),)
    async with grpc.aio.insecure_channel(suite.internal_address["memory"]) as channel:
        memory = memory_pb2_grpc.MemoryServiceStub(channel)
        scope = tenancy_pb2.UserScope(user_id=user)
        gate = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with gate:
                request = memory_pb2.RememberRequest(
                    scope=scope, session_id=session, input=f"earlier question {i}", output=f"earlier answer {i}"
                )
                await memory.Remember(request, metadata=metadata, timeout=60)

        await asyncio.gather(*(one(i) for i in range(count)))


async def session_lengths(
    stub: agent_pb2_grpc.AgentServiceAsyncStub, suite: Suite, turns: int, long_session: int
) -> dict[str, Any]:
    """Turn latency in a session of 20 earlier turns and in one of ``long_session``."""
    result: dict[str, Any] = {}
    for label, length in (("short", 20), ("long", long_session)):
        user = f"session-{label}"
        await fill_session(suite, f"{user}-0", "conv", length)
        one = turn_caller(stub, suite, 1, "and what about question {i}?", session="conv", prefix=user)
        result[label] = {"earlier_turns": length, **await sequential(one, turns)}
    result["p50_ratio_long_to_short"] = round(result["long"]["p50_ms"] / result["short"]["p50_ms"], 3)
    return result


async def measure(topology: str, turns: int, users: int, levels: list[int], long_session: int) -> dict[str, Any]:
    suite = start_suite(topology)
    try:
        options = [("grpc.max_concurrent_streams", 1000)]
        async with grpc.aio.insecure_channel(suite.agent_address, options=options) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            echo = turn_caller(stub, suite, users, "hello {i}, what is the launch code for project {i}?")
            tool = turn_caller(stub, suite, users, 'compute turn {i}\n/call calculator {{"expression": "6*7"}}')
            result: dict[str, Any] = {"echo": await sequential(echo, turns)}
            result["tool"] = await sequential(tool, max(50, turns // 4))
            result["concurrent"] = [await concurrent(echo, max(turns, 20 * level), level) for level in levels]
            if long_session > 0:
                result["session"] = await session_lengths(stub, suite, max(50, turns // 4), long_session)
            return result
    finally:
        suite.stop()


def plot(results: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    topologies = list(results)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.35
    for k, kind in enumerate(("echo", "tool")):
        values = [results[t][kind]["p50_ms"] for t in topologies]
        left.bar([i + k * width for i in range(len(topologies))], values, width, label=f"{kind} turn p50")
    left.axhline(TARGET_P50_MS, color="red", linestyle="--", label=f"target {TARGET_P50_MS} ms")
    left.set_xticks([i + width / 2 for i in range(len(topologies))], topologies)
    left.set_ylabel("ms (unloaded, one at a time)")
    left.legend()
    for topology in topologies:
        levels = results[topology]["concurrent"]
        right.plot([c["in_flight"] for c in levels], [c["per_second"] for c in levels], marker="o", label=topology)
    right.set_xlabel("turns in flight")
    right.set_ylabel("turns/s")
    right.legend()
    figure.suptitle(f"Agent turns through the real services (load avg {os.getloadavg()[0]:.1f})")
    figure.tight_layout()
    path = plot_path("agent_turn")
    figure.savefig(path, dpi=110)
    return path


def main() -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--turns", type=int, default=1000, help="sequential turns per topology")
    parser.add_argument("--users", type=int, default=100, help="tenants the turns rotate over")
    parser.add_argument("--levels", default="16,64", help="concurrency levels for the throughput runs")
    parser.add_argument("--topologies", default=",".join(TOPOLOGIES))
    parser.add_argument(
        "--long-session", type=int, default=10_000, help="earlier turns of the long session (0: skip the case)"
    )
    args = parser.parse_args()
    levels = [int(v) for v in args.levels.split(",")]
    load_before = os.getloadavg()[0]
    topologies = args.topologies.split(",")
    results = {t: asyncio.run(measure(t, args.turns, args.users, levels, args.long_session)) for t in topologies}
    met = results.get("one-process", {}).get("echo", {}).get("p50_ms", float("inf")) <= TARGET_P50_MS
    path = write_results(
        "agent_turn",
        {
            "load_average_before": round(load_before, 2),
            "target_echo_p50_ms": TARGET_P50_MS,
            "target_met": met,
            "results": results,
        },
    )
    png = plot(results)
    for topology, r in results.items():
        print(
            f"{topology:>12}: echo p50 {r['echo']['p50_ms']:.2f} ms p99 {r['echo']['p99_ms']:.2f} ms; "
            f"tool run p50 {r['tool']['p50_ms']:.2f} ms; "
            + "; ".join(f"{c['in_flight']} in flight {c['per_second']:.0f} turns/s" for c in r["concurrent"])
        )
        if "session" in r:
            s = r["session"]
            print(
                f"{'':>12}  session of {s['short']['earlier_turns']} turns p50 {s['short']['p50_ms']:.2f} ms, "
                f"of {s['long']['earlier_turns']} turns p50 {s['long']['p50_ms']:.2f} ms "
                f"(ratio {s['p50_ratio_long_to_short']})"
            )
    print(f"results: {path}, {png}; target echo p50 <= {TARGET_P50_MS} ms one-process: {'met' if met else 'MISSED'}")
    return 0 if met else 1
