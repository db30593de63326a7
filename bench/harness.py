"""What every benchmark shares: argument parsing, latency statistics, progress, machine facts,
results kept as JSON plus a PNG plot in bench/results/, and targets turned into an exit code.

Benchmarks run through ``python -m bench <name>`` (bench/__main__.py), which records the command.

Keep ratios honest: measure the things you compare side by side in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
T = TypeVar("T")

_command = ""


def set_command(name: str, args: Sequence[str]) -> None:
    """Records how this run was started (the runner calls it); results carry it as ``command``."""
    global _command
    _command = " ".join(["python -m bench", name, *map(shlex.quote, args)])


def command() -> str:
    """The command line that reproduces this run (``python -m bench <name> …``)."""
    return _command or " ".join(["python", *map(shlex.quote, sys.argv)])


def argument_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose ``--help`` shows the benchmark's module docstring as written."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


@dataclass(frozen=True)
class LatencyStats:
    """Latency of a series of operations, in milliseconds, plus throughput."""

    count: int
    seconds: float
    per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def run_load(main: Coroutine[Any, Any, T]) -> T:
    """Runs a load generator (a gRPC client driving a server) on uvloop.

    The client shares this machine's two cores with the server it measures; a cheaper
    client leaves the server more of them, so the server's figure is less the client's.
    Comparisons between systems (the race) keep both sides on the same loop instead.
    """
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def latency_stats(latencies_s: Iterable[float], wall_seconds: float) -> LatencyStats:
    """Summarises per-operation latencies (seconds) over a run that took ``wall_seconds``."""
    ms = sorted(v * 1000.0 for v in latencies_s)
    count = len(ms)
    return LatencyStats(
        count=count,
        seconds=wall_seconds,
        per_second=count / wall_seconds if wall_seconds > 0 else 0.0,
        p50_ms=percentile(ms, 0.50),
        p90_ms=percentile(ms, 0.90),
        p99_ms=percentile(ms, 0.99),
        max_ms=ms[-1] if ms else 0.0,
        mean_ms=statistics.fmean(ms) if ms else 0.0,
    )


def progress(items: Iterable[T], total: int | None = None, label: str = "") -> Iterator[T]:
    """Wraps an iterable with a progress bar on stderr (tqdm), so long runs show they are alive."""
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=label, file=sys.stderr, mininterval=0.5, leave=False)


CALIBRATION_LOOP = 300_000


def cpu_calibration_ms() -> float:
    """Milliseconds of the fastest of five runs of one fixed pure-Python loop (CALIBRATION_LOOP additions).

    This VM's speed moves with its neighbours on the host: a 20-million-addition version of this loop
    took 1.8 s, then 2.8 s an hour later on 2026-12-02, and one commit's Recall/s halved between two
    days (docs/memory.md). Recorded with every result, it says how fast the machine was then."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for i in range(CALIBRATION_LOOP):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(1000 * best, 1)


def machine() -> dict[str, Any]:
    """Facts that make a result comparable: CPU count, load, speed, Python, platform."""
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "load_average_1m": round(load[0], 2),
        "cpu_calibration_ms": cpu_calibration_ms(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_results(name: str, results: dict[str, Any]) -> Path:
    """Writes ``bench/results/<name>.json`` with the machine facts and returns its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), "command": command(), **results}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def plot_path(name: str) -> Path:
    """Where a benchmark's PNG goes (``bench/results/<name>.png``)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / f"{name}.png"


def rss_kib(pid: int | None = None) -> int:
    """Resident set size of a process in KiB."""
    import psutil

    return int(psutil.Process(pid or os.getpid()).memory_info().rss // 1024)


def resident_kib(pid: int | None = None) -> dict[str, int]:
    """A process's resident memory in KiB, whole (``rss``) and by kind (/proc/<pid>/status): ``anon`` is
    the heap and stacks the process owns; ``file`` is file pages it maps (an mmap'd SQLite file, code),
    which the kernel can drop and read again, as it would the page cache a plain read() fills."""
    fields = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "RssShmem": "shmem"}
    found: dict[str, int] = {}
    with open(f"/proc/{pid or os.getpid()}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in fields:
                found[fields[name]] = int(value.split()[0])
    return found


@contextlib.contextmanager
def isolated(backend: str, name: str, server: str, data_dir: Path | None = None) -> Iterator[str]:
    """:func:`loomflow.testing.databases.isolated_dsn` for a synchronous benchmark: a Postgres schema
    or Redis key prefix of its own (``name``) on ``server``, removed afterwards."""
    from loomflow.testing import databases

    with databases.entered(databases.isolated_dsn(backend, data_dir or RESULTS, name, server=server)) as dsn:
        yield dsn


def verdict(missed: Sequence[str], label: str = "MISSED") -> int:
    """Prints every missed target on stderr; the exit code is 1 when any was missed, else 0."""
    for line in missed:
        print(f"{label}: {line}", file=sys.stderr)
    return 1 if missed else 0
