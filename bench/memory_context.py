"""A run's Memory reads before its first model call: the four RPCs the Agent made vs one GetContext.

    python -m bench memory_context                  # 2,000 read sets per side and transport
    python -m bench memory_context --sets 500

One process hosts the Memory service (embedded SQLite, insecure) and is its client, so this
process's CPU time is the whole cost of the reads, client and server. The tenant holds what a
conversation does: a session of 20 turns, 40 turns of other sessions, 4 blocks, 10 facts. Each read
set is what a run asks before its first model call: the four concurrent calls of the Agent before
GetContext (Recall excluding the session, ListEpisodes of 20, ListBlocks, QueryFacts of 100) or the
one GetContext the Agent makes now (built by the Agent's own seeding.context_request). Sides
alternate in blocks of 50 sets, so a shared machine's load falls on both alike; both transports the
Agent uses for a co-hosted Memory are measured: ``inprocess`` (the kernel pipeline without
sockets) and ``grpc`` (unary calls over loopback). Reported per set: wall p50 and CPU µs, and the
ratios new/old. Results: bench/results/memory_context.json and .png.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.harness import argument_parser, percentile, plot_path, write_results
from loomflow.agent.seeding import SeedLimits, context_request
from loomflow.kernel.transport.inprocess import InProcessChannel
from loomflow.testing.suite import running_suite
from loomflow.v1 import memory_pb2, memory_pb2_grpc, tenancy_pb2

BLOCK = 50
SESSION = "conv"
PROMPT = "what did I say about the Lisbon trip?"
ALICE = tenancy_pb2.UserScope(user_id="alice")

ReadSet = Callable[[], Awaitable[Any]]


async def load(memory: memory_pb2_grpc.MemoryServiceAsyncStub) -> None:
    for n in range(60):
        session = SESSION if n < 20 else f"other-{n % 5}"
        text = f"turn {n}: planning the Lisbon trip, day {n % 7}, museums and trams"
        await memory.Remember(memory_pb2.RememberRequest(scope=ALICE, session_id=session, input=text, output="ok"))
    for label, session in [("persona", ""), ("diet", ""), ("plan", SESSION), ("notes", SESSION)]:
        content = f"{label}: a few lines of working memory"
        await memory.PutBlock(memory_pb2.PutBlockRequest(scope=ALICE, label=label, session_id=session, content=content))
    for n in range(10):
        fact = memory_pb2.AssertFactRequest(scope=ALICE, subject="alice", predicate=f"likes_{n}", object="trams")
        await memory.AssertFact(fact)


def four_calls(memory: memory_pb2_grpc.MemoryServiceAsyncStub) -> ReadSet:
    """The Agent's reads before GetContext, as it sent them (agent/run/memories.py and seeding.py)."""

    def read() -> Awaitable[Any]:
        return asyncio.gather(
            memory.Recall(memory_pb2.RecallRequest(scope=ALICE, query=PROMPT, limit=5, exclude_session_id=SESSION)),
            memory.ListEpisodes(memory_pb2.ListEpisodesRequest(scope=ALICE, session_id=SESSION, page_size=20)),
            memory.ListBlocks(memory_pb2.ListBlocksRequest(scope=ALICE)),
            memory.QueryFacts(memory_pb2.QueryFactsRequest(scope=ALICE, limit=100)),
        )

    return read


def one_call(memory: memory_pb2_grpc.MemoryServiceAsyncStub) -> ReadSet:
    request = context_request(ALICE, SESSION, PROMPT, SeedLimits(), recall_limit=5)
    assert request is not None

    def read() -> Awaitable[Any]:
        return memory.GetContext(request)

    return read


async def measure(sides: dict[str, ReadSet], sets: int) -> dict[str, dict[str, float]]:
    walls: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, float] = dict.fromkeys(sides, 0.0)
    for read in sides.values():  # warm caches and code paths
        for _ in range(BLOCK):
            await read()
    for _ in range(max(1, sets // BLOCK)):
        for name, read in sides.items():
            cpu_started = time.process_time()
            for _ in range(BLOCK):
                started = time.perf_counter()
                await read()
                walls[name].append(time.perf_counter() - started)
            cpu[name] += time.process_time() - cpu_started
    return {
        name: {
            "sets": len(walls[name]),
            "wall_p50_ms": round(percentile(sorted(walls[name]), 0.5) * 1000, 3),
            "cpu_us_per_set": round(cpu[name] / len(walls[name]) * 1e6, 1),
        }
        for name in sides
    }


async def run(sets: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        async with running_suite(Path(folder), services="memory") as suite:
            channels: dict[str, Any] = {
                "inprocess": InProcessChannel(suite.server.local_methods),
                "grpc": suite.channel,
            }
            await load(memory_pb2_grpc.MemoryServiceStub(suite.channel))
            results: dict[str, Any] = {}
            for transport, channel in channels.items():
                memory = memory_pb2_grpc.MemoryServiceStub(channel)
                sides = await measure({"four_calls": four_calls(memory), "get_context": one_call(memory)}, sets)
                old, new = sides["four_calls"], sides["get_context"]
                ratios = {
                    "ratio_wall_p50": round(new["wall_p50_ms"] / old["wall_p50_ms"], 3),
                    "ratio_cpu": round(new["cpu_us_per_set"] / old["cpu_us_per_set"], 3),
                }
                results[transport] = {**sides, **ratios}
                print(f"{transport:>9}: four calls {old}; GetContext {new}; new/old {ratios}")
            return results


def plot(results: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    transports = list(results)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key, label in (
        (axes[0], "cpu_us_per_set", "CPU µs per read set"),
        (axes[1], "wall_p50_ms", "wall p50 ms"),
    ):
        for k, side in enumerate(("four_calls", "get_context")):
            values = [results[t][side][key] for t in transports]
            axis.bar([i + k * 0.35 for i in range(len(transports))], values, 0.35, label=side)
        axis.set_xticks([i + 0.175 for i in range(len(transports))], transports)
        axis.set_ylabel(label)
        axis.legend()
    figure.suptitle("A run's Memory reads before its first model call")
    figure.tight_layout()
    path = plot_path("memory_context")
    figure.savefig(path, dpi=110)
    return path


def main() -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--sets", type=int, default=2000, help="read sets per side and transport")
    args = parser.parse_args()
    results = asyncio.run(run(args.sets))
    path = write_results("memory_context", {"sets": args.sets, "results": results})
    print(f"results: {path}, {plot(results)}")
    return 0
