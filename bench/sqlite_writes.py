"""What group commit buys SQLite writes: Memory's Remember through its SQLite store, one commit per write or per batch.

    python -m bench sqlite_writes                      # 4,000 writes per lane, 3 rounds
    python -m bench sqlite_writes --writes 8000 --rounds 5

Every SQLite store writes through :class:`loomflow.kernel.backends.sqlite.GroupWriter`: one
thread, the writes queued together in one transaction, each in its own savepoint. The lanes
differ only in how many writes one transaction may hold (``--batch``, default 64, against 1:
a commit per write, as before group commit), each with 1 and with 64 writes in flight (500
tenants, one short episode each, embedded with the default embedder at write time), in
alternation round by round so drift hits them alike. Reported per lane: writes/s and CPU of
this process per write (all threads), best round. Results: bench/results/sqlite_writes.json
and sqlite_writes.png.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import plot_path, write_results
from loomflow.memory.models import EpisodeDraft, now_micros
from loomflow.memory.recall.factory import EmbedderOptions, open_embedder
from loomflow.memory.store.sqlite import SQLiteStore

TENANTS = 500
IN_FLIGHT = (1, 64)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _lane(store: SQLiteStore, writes: int, in_flight: int, first: int) -> tuple[float, float]:
    """(writes/s, CPU µs per write) for ``writes`` Remembers with ``in_flight`` at once."""
    gate = asyncio.Semaphore(in_flight)

    async def one(n: int) -> None:
        draft = EpisodeDraft(session_id="s", input=f"turn {n}: the launch code is {n:06d}", output=f"noted {n}")
        async with gate:
            await store.remember(f"tenant-{n % TENANTS}", draft, now_micros())

    cpu, started = _cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(first, first + writes)))
    wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    return writes / wall, 1e6 * cpu / writes


async def measure(writes: int, rounds: int, batch: int) -> dict[str, Any]:
    embedder = open_embedder(EmbedderOptions())
    await embedder.start()
    folder = Path(tempfile.mkdtemp(prefix="loomflow-sqlite-writes-"))
    stores = {n: SQLiteStore(folder / f"batch-{n}.db", embedder=embedder, write_batch=n) for n in (1, batch)}
    for store in stores.values():
        await store.start()
    best: dict[str, dict[str, float]] = {}
    try:
        for store in stores.values():  # warm: tables, caches, the embedder's word cache
            await _lane(store, 200, 8, 0)
        for round_ in range(rounds):
            for size, store in stores.items():
                for in_flight in IN_FLIGHT:
                    per_second, cpu_us = await _lane(store, writes, in_flight, (round_ + 1) * writes)
                    name = f"batch {size}, {in_flight} in flight"
                    kept = best.setdefault(name, {"writes_per_second": 0.0, "cpu_us_per_write": float("inf")})
                    kept["writes_per_second"] = round(max(kept["writes_per_second"], per_second))
                    kept["cpu_us_per_write"] = round(min(kept["cpu_us_per_write"], cpu_us), 1)
            print(f"sqlite_writes: round {round_ + 1}/{rounds}: {best}", flush=True)
    finally:
        for store in stores.values():
            await store.close()
        await embedder.close()
    return {"lanes": best, "writes_per_lane": writes, "rounds": rounds, "batch": batch, "embedder": embedder.name}


def plot(lanes: dict[str, dict[str, float]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(lanes)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.barh(names, [lanes[n]["writes_per_second"] for n in names])
    left.set(title="Remember through the SQLite store (writes/s)")
    right.barh(names, [lanes[n]["cpu_us_per_write"] for n in names], color="tab:orange")
    right.set(title="CPU per write (µs, all threads)")
    for axis in (left, right):
        axis.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    path = plot_path("sqlite_writes")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="writes one transaction may hold in the grouped lanes")
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.writes, args.rounds, args.batch))
    path = write_results("sqlite_writes", results)
    print(f"results: {path}\nplot: {plot(results['lanes'])}")
    return 0
