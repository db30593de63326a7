"""What a tool call costs on each path the Agent has: on its event loop, or in a worker process.

    python -m bench tool_worker                    # 500 calls per path, 3 rounds
    python -m bench tool_worker --calls 2000 --rounds 5

Paths, interleaved round by round so drift hits them alike, each a trivial tool
(it returns its argument), so the figure is the path's own overhead:

- ``async_in_loop``: an ``async def`` tool, run on the loop under ``asyncio.timeout``
  (the common case: an I/O tool);
- ``sync_worker``: a ``def`` tool in a tool worker process (JSON over a pipe, a
  per-call ``RLIMIT_CPU``) — how the Agent runs synchronous tools now;
- ``sync_thread``: the same tool through ``asyncio.to_thread`` — how it ran before
  (unstoppable, and holding the GIL while it computes);
- ``calculator_worker``: the built-in calculator (``6*7``) in a worker.

Each path is timed one call at a time (latency) and with 8 calls in flight
(throughput; the pool has 2 workers), the calls in flight spread over 8 tenants
as in an Agent serving many, and again all from one tenant: one tenant holds at
most all workers but one (the rest stay free for the others), so its own
throughput on a 2-worker pool is one worker's. Results:
bench/results/tool_worker.json and tool_worker.png.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import latency_stats, plot_path, write_results
from loomflow.agent.context import RunContext, bound_run_context
from loomflow.agent.tools.builtins import calculator
from loomflow.agent.tools.registry import Tool, tool
from loomflow.agent.tools.workers import ToolWorkers, WorkerLimits
from loomflow.kernel.tenancy import scope_for

PATHS = ("async_in_loop", "sync_worker", "sync_thread", "calculator_worker")


@tool
def echo_sync(text: str) -> str:
    """Returns its argument."""
    return text


@tool
async def echo_async(text: str) -> str:
    """Returns its argument."""
    return text


def _importable(found: Tool) -> Tool:
    """The tool as workers import it: this file runs as ``__main__``, they import ``bench.tool_worker``."""
    module = importlib.import_module("bench.tool_worker")
    same: Tool = getattr(module, found.name)
    return same


async def _call(path: str, workers: ToolWorkers, ctx: RunContext, n: int) -> None:
    if path == "async_in_loop":
        async with asyncio.timeout(10):
            await echo_async.invoke({"text": f"hello {n}"})
    elif path == "sync_thread":
        await echo_sync.invoke({"text": f"hello {n}"})
    else:
        target = calculator if path == "calculator_worker" else _importable(echo_sync)
        arguments = {"expression": "6*7"} if path == "calculator_worker" else {"text": f"hello {n}"}
        module, name = target.import_path()
        await workers.run(module, name, target.bind(arguments), ctx, 10.0)


def _tenant(n: int) -> RunContext:
    tenant = f"bench-tenant-{n}"
    return RunContext(tenant, "s", "r", scope_for(tenant), time.monotonic() + 3600)


async def _in_flight(path: str, workers: ToolWorkers, tenants: list[RunContext], calls: int, in_flight: int) -> float:
    """Calls per second with ``in_flight`` calls at once, call ``n`` made by ``tenants[n % len(tenants)]``."""
    gate = asyncio.Semaphore(in_flight)

    async def bounded(n: int) -> None:
        async with gate:
            ctx = tenants[n % len(tenants)]
            with bound_run_context(ctx):
                await _call(path, workers, ctx, n)

    started = time.perf_counter()
    await asyncio.gather(*(bounded(n) for n in range(calls)))
    return calls / (time.perf_counter() - started)


async def _measure(path: str, workers: ToolWorkers, ctx: RunContext, calls: int, in_flight: int) -> dict[str, Any]:
    latencies: list[float] = []
    started = time.perf_counter()
    for n in range(calls):
        t = time.perf_counter()
        await _call(path, workers, ctx, n)
        latencies.append(time.perf_counter() - t)
    sequential = latency_stats(latencies, time.perf_counter() - started)
    return {
        "p50_us": sequential.p50_ms * 1000,
        "p99_us": sequential.p99_ms * 1000,
        "calls_per_second_in_flight": await _in_flight(path, workers, [_tenant(n) for n in range(8)], calls, in_flight),
        "calls_per_second_in_flight_one_tenant": await _in_flight(path, workers, [ctx], calls, in_flight),
    }


async def _main(calls: int, rounds: int, in_flight: int, nice: int) -> dict[str, Any]:
    preload = ("bench.tool_worker", calculator.import_path()[0])
    workers = ToolWorkers(WorkerLimits(processes=2, preload=preload, nice=nice))
    await workers.start()
    ctx = RunContext("bench-tenant", "s", "r", scope_for("bench-tenant"), time.monotonic() + 3600)
    samples: dict[str, list[dict[str, Any]]] = {path: [] for path in PATHS}
    try:
        with bound_run_context(ctx):
            for path in PATHS:  # warm-up
                await _measure(path, workers, ctx, 50, in_flight)
            for round_no in range(rounds):
                for path in PATHS:
                    samples[path].append(await _measure(path, workers, ctx, calls, in_flight))
                    print(f"round {round_no + 1}/{rounds} {path:18} {samples[path][-1]}", file=sys.stderr)
    finally:
        await workers.close()
    medians = {
        path: {key: statistics.median(s[key] for s in found) for key in found[0]} for path, found in samples.items()
    }
    base = medians["async_in_loop"]["p50_us"]
    for values in medians.values():
        values["extra_p50_us_vs_in_loop"] = values["p50_us"] - base
    return {
        "calls": calls,
        "rounds": rounds,
        "in_flight": in_flight,
        "in_flight_tenants": 8,
        "worker_nice": nice,
        "medians": medians,
        "rounds_raw": samples,
    }


def _plot(medians: dict[str, dict[str, float]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = plot_path("tool_worker")
    fig, ax = plt.subplots(figsize=(7.5, 3.5))
    p50 = [medians[p]["p50_us"] for p in PATHS]
    p99 = [medians[p]["p99_us"] for p in PATHS]
    xs = range(len(PATHS))
    ax.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50", color="#4c72b0")
    ax.bar([x + 0.2 for x in xs], p99, width=0.4, label="p99", color="#c44e52")
    for x, value in zip(xs, p50, strict=True):
        ax.annotate(f"{value:.0f}", (x - 0.2, value), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), PATHS)
    ax.set_yscale("log")
    ax.set_ylabel("µs per call (one at a time, log)")
    ax.set_title("Tool call overhead: event loop vs worker process")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500, help="calls per path and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (paths interleaved); medians are reported")
    parser.add_argument("--in-flight", type=int, default=8, help="calls in flight for the throughput figure")
    parser.add_argument("--nice", type=int, default=WorkerLimits.nice, help="workers' CPU priority below the Agent's")
    parser.add_argument("--results-name", default="tool_worker", help="bench/results/<name>.json")
    args = parser.parse_args()
    results = asyncio.run(_main(args.calls, args.rounds, args.in_flight, args.nice))
    path = write_results(args.results_name, results)
    plot = _plot(results["medians"])
    for name, values in results["medians"].items():
        print(
            f"{name:18} p50 {values['p50_us']:8.0f} µs  p99 {values['p99_us']:8.0f} µs  "
            f"{values['calls_per_second_in_flight']:7.0f} calls/s with {args.in_flight} in flight "
            f"({values['calls_per_second_in_flight_one_tenant']:.0f} from one tenant)"
        )
    print(f"results: {path}\nplot: {plot}")
    return 0
