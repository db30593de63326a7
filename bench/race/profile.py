"""Where a lane's CPU goes: py-spy samples of every server process, summarized.

`bench/race/run.py --profile SECONDS` attaches ``py-spy record`` (found on PATH or
in ``$PY_SPY``; a profiling tool, not a project dependency) to each process of a
lane while its load runs, then keeps, per process: the functions with the most
samples of their own (self time) and the share of samples whose stack passes
through each part of the stack that matters for the hop tax (grpc, the kernel
pipeline, protovalidate, serialization, storage, the model, logging, metrics).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

# Substrings of a frame ("function (file:line)") that mark a part of the stack; first match wins per part.
PARTS: dict[str, tuple[str, ...]] = {
    # grpc's Cython frames are native to py-spy: their time shows as the self time of the Python
    # frame below them (the event loop's Runner.run), not here.
    "grpc (aio, cython, core)": ("grpc/_cython", "grpc/aio", "_cython/cygrpc", "cygrpc"),
    "kernel pipeline (interceptor)": ("kernel/interceptor.py",),
    "in-process transport": ("kernel/transport/",),
    "protovalidate": ("kernel/validation.py", "protovalidate", "celpy", "cel_"),
    "protobuf (de)serialization": ("SerializeToString", "FromString", "ParseFromString", "MergeFromString"),
    "auth (tokens)": ("kernel/auth.py", "kernel/identity.py", "jwt/"),
    "storage (sqlite, file, ledger)": ("sqlite", "aiosqlite", "/store", "ledger", "audit/writer", "audit/log"),
    "memory search": ("memory/index", "memory/search", "numpy", "embed"),
    "agent runner": ("agent/runner.py", "agent/seeding.py", "agent/toolcalls.py"),
    "logging": ("logging/__init__", "kernel/loglimits", "json/encoder"),
    "metrics": ("kernel/instruments", "kernel/telemetry", "opentelemetry"),
    "event loop (uvloop, asyncio)": ("uvloop", "asyncio/"),
}


def py_spy() -> str | None:
    return os.environ.get("PY_SPY") or shutil.which("py-spy")


def start(pids: dict[str, int], seconds: float, directory: Path) -> list[tuple[str, Path, subprocess.Popen[bytes]]]:
    """Starts one sampler per process (100 Hz, non-blocking: the process is never paused)."""
    tool = py_spy()
    if tool is None:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    samplers = []
    for name, pid in pids.items():
        out = directory / f"{name}.collapsed"
        command = [tool, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "100"]
        command += ["--format", "raw", "--nonblocking", "-o", str(out)]
        samplers.append((name, out, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    return samplers


def finish(samplers: list[tuple[str, Path, subprocess.Popen[bytes]]]) -> dict[str, Any]:
    """Waits for the samplers and summarizes each process's samples."""
    summary: dict[str, Any] = {}
    for name, out, process in samplers:
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
        summary[name] = summarize(out) if out.exists() else {"error": "py-spy wrote no samples"}
    return summary


def summarize(collapsed: Path, top: int = 15) -> dict[str, Any]:
    own: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[_short(frames[-1])] += count
        for part, marks in PARTS.items():
            if any(mark in stack for mark in marks):
                parts[part] += count
    if total == 0:
        return {"samples": 0}
    return {
        "samples": total,
        "self_time_top": [{"function": f, "share": round(n / total, 4)} for f, n in own.most_common(top)],
        "stack_share": {part: round(n / total, 4) for part, n in parts.most_common()},
    }


def _short(frame: str) -> str:
    """``function (path/to/file.py:12)`` → ``function (file.py)``: lines vary, functions are what to read."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(file.split('/')[-2:])})" if file else name
