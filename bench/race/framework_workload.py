"""The race's other lane: the same multi-tenant workload through the in-process framework.

Runs inside its own virtualenv (`loomflow==0.20.0` from PyPI shares our import name), so it
imports nothing of ours. Prints one JSON object on stdout:

    python framework_workload.py --users 250 --turns 5 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import sys
import tempfile
import time
import warnings


def rss_kib(anonymous: bool = False) -> int:
    """Resident KiB; ``anonymous``: without the file and shared pages (statm's resident - shared)."""
    with open("/proc/self/statm") as handle:
        fields = handle.read().split()
    pages = int(fields[1]) - (int(fields[2]) if anonymous else 0)
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def workload(users: int, turns: int, concurrency: int) -> dict[str, object]:
    from loomflow import Agent, InMemoryMemory
    from loomflow.governance.budget import BudgetConfig, StandardBudget
    from loomflow.security.audit import FileAuditLog

    folder = tempfile.mkdtemp(prefix="framework-race-")
    agent = Agent(
        "You are a helpful assistant.",
        model="echo",
        memory=InMemoryMemory(),
        budget=StandardBudget(BudgetConfig(per_user_max_tokens=10_000_000)),
        audit_log=FileAuditLog(os.path.join(folder, "audit.jsonl"), secret=secrets.token_hex(32)),
    )
    # Warm up outside the measurement (imports, first-call caches).
    await agent.run("warm up", user_id="warmup", session_id="warmup")
    rss_before, anon_before = rss_kib(), rss_kib(anonymous=True)
    cpu_before = cpu_seconds()
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    tokens: dict[str, int] = {}

    async def user_session(index: int) -> None:
        user = f"user-{index}"
        for turn in range(turns):
            async with gate:
                started = time.perf_counter()
                result = await agent.run(
                    f"turn {turn} for {user}: remember the code word {index}-{turn}",
                    user_id=user,
                    session_id=f"{user}-session",
                )
                latencies.append(time.perf_counter() - started)
            tokens[user] = tokens.get(user, 0) + result.tokens_in + result.tokens_out

    started = time.perf_counter()
    await asyncio.gather(*(user_session(i) for i in range(users)))
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before
    rss_after, anon_after = rss_kib(), rss_kib(anonymous=True)
    return {
        "users": users,
        "turns": turns,
        "concurrency": concurrency,
        "wall_seconds": wall,
        "latencies_s": latencies,
        "cpu_seconds": cpu,
        "rss_kib_before": rss_before,
        "rss_kib_after": rss_after,
        "rss_anon_kib_before": anon_before,
        "rss_anon_kib_after": anon_after,
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "tokens_charged": sum(tokens.values()),
        "framework_version": __import__("importlib.metadata").metadata.version("loomflow"),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    result = asyncio.run(workload(args.users, args.turns, args.concurrency))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
