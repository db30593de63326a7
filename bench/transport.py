"""Unary calls against the multiplexed transport: calls/s and CPU per call on each side, in one run.

    python -m bench transport                       # 3 rounds of 3,000 calls per lane, 64 in flight
    python -m bench transport --calls 10000 --rounds 5 --concurrency 128

A PolicyService runs in its own ``loomflow serve`` process (secure mode, a service
token, tracing off); this process is the client, as the Agent is. Each call is
``GetPolicy`` for one of 64 tenants (a cheap handler, so the figures are the
transport's). Lanes, interleaved round by round so drift on a shared machine hits them
alike:

- ``unary``: one unary gRPC call per request over one channel (``LOOMFLOW_AGENT_TRANSPORT=grpc``);
- ``mux``: the same stub over :class:`MuxChannel` (what the Agent does by default for a service
  in another process: 2 streams, up to 64 calls coalesced per write).

With ``--agent-users N`` it also runs the Agent itself in the per-service topology (five
``loomflow serve`` processes, bench/topology.py) once per transport — unary calls to the
other processes (``LOOMFLOW_AGENT_TRANSPORT=grpc``) and multiplexed (the default) — with N users of
bench/workload.py (``--agent-turns`` turns each), and reports turns/s, p50 and the CPU
of all five processes per turn.

Reported per lane (medians over the rounds): calls per second, client CPU µs per call
(this process), server CPU µs per call (the server process), and the mux/unary ratios.
Results: bench/results/transport.json and transport.png. No target: read the ratios of
one run (the machine is shared).
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import psutil

from bench.harness import argument_parser, latency_stats, plot_path, write_results
from bench.topology import START_TIMEOUT_S, secure_env, start_suite
from bench.workload import run_workload
from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.kernel.transport.mux_client import MuxChannel, MuxSettings
from loomflow.testing.processes import ServeProcess
from loomflow.v1 import policy_pb2, policy_pb2_grpc, tenancy_pb2

LANES = ("unary", "mux")
TENANTS = 64


async def _lane(
    lane: str, address: str, metadata: Any, calls: int, concurrency: int, server: psutil.Process
) -> dict[str, float]:
    channel = grpc.aio.insecure_channel(address)
    mux = MuxChannel(channel, MuxSettings()) if lane == "mux" else None
    stub = policy_pb2_grpc.PolicyServiceStub(mux.as_channel() if mux is not None else channel)
    requests = [policy_pb2.GetPolicyRequest(scope=tenancy_pb2.UserScope(user_id=f"tenant-{i}")) for i in range(TENANTS)]

    async def worker(start: int, count: int) -> None:
        for i in range(start, start + count):
            await stub.GetPolicy(requests[i % TENANTS], metadata=metadata, timeout=30)

    try:
        await worker(0, 200)  # warm-up: the connection, the streams, the server's caches
        share = calls // concurrency
        before_server = server.cpu_times()
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(w * share, share) for w in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        after_server = server.cpu_times()
    finally:
        if mux is not None:
            await mux.close()
        await channel.close()
    done = share * concurrency
    server_cpu = (after_server.user + after_server.system) - (before_server.user + before_server.system)
    return {
        "calls_per_second": done / wall,
        "client_cpu_us_per_call": cpu * 1e6 / done,
        "server_cpu_us_per_call": server_cpu * 1e6 / done,
    }


async def _main(calls: int, rounds: int, concurrency: int) -> dict[str, Any]:
    secret = "bench-transport-" + "x" * 32
    env = {**secure_env(secret), "LOOMFLOW_AUTH_JWT_SECRET": secret}
    process = ServeProcess("policy", Path(tempfile.mkdtemp(prefix="loomflow-transport-")), env=env)
    process.start(START_TIMEOUT_S)
    token = mint_token(AuthSettings(jwt_secret=secret), "loomflow-agent", Role.SERVICE, ttl_seconds=3600)
    metadata = (("authorization", f"Bearer {token}"),)
    assert process.process is not None
    server = psutil.Process(process.process.pid)
    samples: dict[str, list[dict[str, float]]] = {lane: [] for lane in LANES}
    try:
        for round_no in range(rounds):
            for lane in LANES:
                samples[lane].append(await _lane(lane, process.address, metadata, calls, concurrency, server))
                print(f"round {round_no + 1}/{rounds} {lane:6} {samples[lane][-1]}", file=sys.stderr)
    finally:
        process.stop()
    medians = {lane: {k: statistics.median(s[k] for s in found) for k in found[0]} for lane, found in samples.items()}
    ratios = {k: medians["mux"][k] / medians["unary"][k] for k in medians["mux"]}
    return {
        "rpc": "PolicyService/GetPolicy",
        "calls_per_lane": calls,
        "rounds": rounds,
        "concurrency": concurrency,
        "mux_settings": dataclasses.asdict(MuxSettings()),
        "medians": medians,
        "mux_vs_unary": ratios,
        "rounds_raw": samples,
    }


AGENT_LANES = {"unary": "grpc", "mux": "inprocess"}
"""Lane → LOOMFLOW_AGENT_TRANSPORT (the default, ``inprocess``, multiplexes calls to other processes)."""


def _agent_lane(lane: str, users: int, turns: int, concurrency: int) -> dict[str, float]:
    suite = start_suite("per-service", extra_env={"LOOMFLOW_AGENT_TRANSPORT": AGENT_LANES[lane]})
    try:
        processes = [psutil.Process(pid) for pid in suite.pids()]

        def cpu() -> float:
            return float(sum(t.user + t.system for t in (p.cpu_times() for p in processes)))

        before = cpu()
        result = asyncio.run(run_workload(suite, users, turns, concurrency, phases=1))
        spent = cpu() - before
    finally:
        suite.stop()
    stats = latency_stats(result.latencies_s, result.wall_seconds)
    done = max(1, len(result.latencies_s))
    return {
        "turns_per_second": stats.per_second,
        "p50_ms": stats.p50_ms,
        "cpu_ms_per_turn": spent * 1000 / done,
        "errors": float(len(result.errors)),
    }


def _plot(medians: dict[str, dict[str, float]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = plot_path("transport")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    rate = [medians[lane]["calls_per_second"] for lane in LANES]
    axes[0].bar(LANES, rate, color=["#4c72b0", "#55a868"])
    axes[0].set_ylabel("calls per second")
    for x, value in enumerate(rate):
        axes[0].annotate(f"{value:.0f}", (x, value), ha="center", va="bottom")
    width = 0.38
    for offset, side, color in ((-width / 2, "client", "#8172b2"), (width / 2, "server", "#c44e52")):
        values = [medians[lane][f"{side}_cpu_us_per_call"] for lane in LANES]
        axes[1].bar([x + offset for x in range(len(LANES))], values, width, label=side, color=color)
    axes[1].set_xticks(range(len(LANES)), LANES)
    axes[1].set_ylabel("CPU µs per call")
    axes[1].legend()
    fig.suptitle("GetPolicy to a service in another process: unary vs multiplexed")
    fig.tight_layout()
    fig.savefig(path)
    return path


def main() -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--calls", type=int, default=3000, help="calls per lane and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (lanes interleaved); medians are reported")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight")
    parser.add_argument("--agent-users", type=int, default=0, help="also run the Agent per service (0: skip)")
    parser.add_argument("--agent-turns", type=int, default=2, help="turns per user in the Agent lanes")
    args = parser.parse_args()
    results = asyncio.run(_main(args.calls, args.rounds, args.concurrency))
    if args.agent_users > 0:
        agent = {lane: _agent_lane(lane, args.agent_users, args.agent_turns, 64) for lane in AGENT_LANES}
        results["agent_per_service"] = {
            "users": args.agent_users,
            "turns": args.agent_turns,
            "lanes": agent,
            "mux_vs_unary": {k: agent["mux"][k] / agent["unary"][k] for k in agent["mux"] if agent["unary"][k]},
        }
        for lane, values in agent.items():
            print(
                f"agent {lane:6} {values['turns_per_second']:6.1f} turns/s  p50 {values['p50_ms']:7.1f} ms"
                f"  {values['cpu_ms_per_turn']:6.2f} CPU ms/turn (5 processes)  errors {values['errors']:.0f}"
            )
    path = write_results("transport", results)
    plot = _plot(results["medians"])
    for lane, values in results["medians"].items():
        print(
            f"{lane:6} {values['calls_per_second']:7.0f} calls/s"
            f"  client {values['client_cpu_us_per_call']:6.1f} µs/call"
            f"  server {values['server_cpu_us_per_call']:6.1f} µs/call"
        )
    ratios = results["mux_vs_unary"]
    print(
        f"mux/unary: calls/s x{ratios['calls_per_second']:.2f}, client CPU x{ratios['client_cpu_us_per_call']:.2f}, "
        f"server CPU x{ratios['server_cpu_us_per_call']:.2f}"
    )
    print(f"results: {path}\nplot: {plot}")
    return 0
