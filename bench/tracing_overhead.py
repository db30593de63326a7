"""What tracing costs an agent run: CPU per run with tracing off, on (spans dropped), on (recorded).

    python -m bench tracing_overhead                 # 300 runs per mode, 3 rounds
    python -m bench tracing_overhead --runs 1000 --rounds 5

All five services run in this process (insecure mode, embedded defaults, echo
model) and so does the client, so process CPU time per run covers both sides
of every hop; it is a steadier measure than runs per second on a shared
machine. Modes, interleaved round by round so drift hits them alike:

- ``off``: ``--tracing false``;
- ``dropped``: ``--tracing`` without ``--otlp-endpoint`` (the default): context
  propagates, every span is dropped by the sampler;
- ``recorded``: ``--tracing`` with an exporter (spans go to an in-memory one).

Server spans come from the instrumentation library's public grpc.aio server
interceptor (the kernel no longer wraps handlers with its private internals;
the former ``aio_interceptor`` comparison mode is now the ``dropped`` mode).

Results: bench/results/tracing_overhead.json and tracing_overhead.png. No target:
the figures feed docs/observability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import argument_parser, plot_path, write_results
from loomflow.kernel import tracing
from loomflow.testing.suite import running_suite
from loomflow.v1 import agent_pb2, agent_pb2_grpc, tenancy_pb2

MODES = ("off", "dropped", "recorded")


async def _measure(mode: str, runs: int, concurrency: int) -> dict[str, float]:
    capture = tracing.capture_spans() if mode == "recorded" else contextlib.nullcontext()
    traced = mode in ("dropped", "recorded")
    try:
        with capture, tempfile.TemporaryDirectory() as data:
            async with running_suite(Path(data), overrides={"": {"tracing": traced}}) as suite:
                stub = agent_pb2_grpc.AgentServiceStub(suite.channel)

                async def run(i: int) -> None:
                    scope = tenancy_pb2.UserScope(user_id=f"tenant-{i % 50}")
                    options = agent_pb2.RunOptions(prompt="hello there", session_id=f"s-{i % 50}")
                    await stub.Run(agent_pb2.RunRequest(scope=scope, options=options))

                for i in range(20):  # warm-up: channels, caches, first SQLite pages
                    await run(i)
                gate = asyncio.Semaphore(concurrency)

                async def bounded(i: int) -> None:
                    async with gate:
                        await run(i)

                cpu, wall = time.process_time(), time.perf_counter()
                await asyncio.gather(*(bounded(i) for i in range(runs)))
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        tracing.uninstrument_grpc()
    return {"cpu_ms_per_run": cpu * 1000 / runs, "runs_per_second": runs / wall}


async def _main(runs: int, rounds: int, concurrency: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for round_no in range(rounds):
        for mode in MODES:
            samples[mode].append(await _measure(mode, runs, concurrency))
            print(f"round {round_no + 1}/{rounds} {mode:16} {samples[mode][-1]}", file=sys.stderr)
    medians = {
        mode: {key: statistics.median(s[key] for s in found) for key in found[0]} for mode, found in samples.items()
    }
    base = medians["off"]["cpu_ms_per_run"]
    for values in medians.values():
        values["cpu_vs_off"] = values["cpu_ms_per_run"] / base
    return {
        "runs_per_mode": runs,
        "rounds": rounds,
        "concurrency": concurrency,
        "medians": medians,
        "rounds_raw": samples,
    }


def _plot(medians: dict[str, dict[str, float]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = plot_path("tracing_overhead")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    values = [medians[m]["cpu_ms_per_run"] for m in MODES]
    ax.bar(MODES, values, color=["#4c72b0", "#55a868", "#c44e52", "#8172b2"])
    for x, value in enumerate(values):
        ax.annotate(f"{value:.2f}", (x, value), ha="center", va="bottom")
    ax.set_ylabel("CPU ms per agent run")
    ax.set_title("Tracing cost per agent run (client + five services, one process)")
    fig.tight_layout()
    fig.savefig(path)
    return path


def main() -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--runs", type=int, default=300, help="agent runs per mode and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (modes interleaved); medians are reported")
    parser.add_argument("--concurrency", type=int, default=16, help="runs in flight")
    args = parser.parse_args()
    results = asyncio.run(_main(args.runs, args.rounds, args.concurrency))
    path = write_results("tracing_overhead", results)
    plot = _plot(results["medians"])
    for mode, values in results["medians"].items():
        print(
            f"{mode:16} {values['cpu_ms_per_run']:.2f} CPU ms/run  x{values['cpu_vs_off']:.2f}  "
            f"{values['runs_per_second']:.0f} runs/s"
        )
    print(f"results: {path}\nplot: {plot}")
    return 0
