"""Audit speed: durable appends per second with group commit, and verification per million entries.

    python -m bench audit_append                                  # file + Postgres (if a DSN is set)
    python -m bench audit_append --sinks file --seconds 2 --verify-entries 200000

Appends, for each sink and for 1, 16 and 256 concurrent writers (spread over 1,000
tenants, a ~100-byte payload each):

* ``in-process``: writers call the audit log directly (``AuditLog.append``), which is
  what one Audit process can make durable: the number the ≥ 10,000/s target is about.
* ``grpc``: `loomflow serve --services audit` runs as its own process in secure mode;
  this process is the client (one channel, a service token on every call). The Python
  gRPC client and server put a ceiling on this one that has nothing to do with the log.

Every append is acknowledged only after its batch is durable (``fdatasync`` / COMMIT);
the JSON records how many appends shared each durable write. The file log lives under
``--data-dir`` (default: a fresh folder on the repository's disk, not tmpfs). Postgres
comes from ``--postgres-dsn`` or LOOMFLOW_TEST_POSTGRES_DSN; each run uses its own
schema, dropped afterwards; the server's ``fsync`` and ``synchronous_commit`` are
recorded, because a test database with ``fsync=off`` makes COMMIT cheaper than durable.

Verify: ``--verify-entries`` entries (default 1,000,000) over 1,000 tenants are
written straight into a file log and into Postgres, then verified the way the
service and the offline CLI do (read + parse + recompute every mac). The pure
verifier is also timed on entries already in memory (a quarter of the count, to keep
memory modest).

Targets: ≥ 10,000 durable appends/s in-process with group commit, verify ≥ 200,000
entries/s. Results: bench/results/audit_append.json and audit_append.png. Exits
non-zero when a target is missed (the figures are kept either way).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import asyncpg
import grpc
from google.protobuf import struct_pb2

from bench.harness import REPO, argument_parser, latency_stats, plot_path, verdict, write_results
from loomflow.audit.chain import seal
from loomflow.audit.core import AuditLog
from loomflow.audit.keys import AuditKeys, load_keys
from loomflow.audit.models import Batch, Draft, Entry
from loomflow.audit.sink import (
    Sink,
    jsonl,
    open_sink,
)
from loomflow.audit.sink.postgres import ENTRY_COLUMNS, entry_record, migrate
from loomflow.audit.verify import verify_entries
from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.testing import databases
from loomflow.testing.processes import ServeProcess
from loomflow.v1 import audit_pb2, audit_pb2_grpc, tenancy_pb2

TARGET_APPENDS = 10_000.0
TARGET_VERIFY = 200_000.0
WRITERS = (1, 16, 256)
TENANTS = 1_000
SECRET = "bench-secret-" + secrets.token_hex(16)
PAYLOAD: dict[str, str | int | bool] = {
    "tool": "search",
    "query": "quarterly revenue by region",
    "results": 12,
    "cached": False,
}


def fresh_keys() -> dict[str, str]:
    return {
        "hmac_key": secrets.token_hex(32),
        "signing_key": secrets.token_hex(32),
        "payload_key": secrets.token_hex(32),
    }


def load(texts: dict[str, str]) -> AuditKeys:
    return load_keys(texts["hmac_key"], texts["signing_key"], texts["payload_key"], insecure=False)


def payload_bytes() -> bytes:
    message = struct_pb2.Struct()
    message.update(PAYLOAD)
    return message.SerializeToString(deterministic=True)


class CountingSink:
    """The real sink, counting the durable writes (fsyncs / transactions) it makes."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.writes = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def write_batch(self, batch: Batch) -> None:
        self.writes += 1
        await self.inner.write_batch(batch)


# -- where each sink lives -----------------------------------------------------


@asynccontextmanager
async def sink_dsn(sink: str, args: argparse.Namespace) -> AsyncIterator[str]:
    """A fresh, empty log on the sink: a new folder, or a new Postgres schema."""
    if sink == "file":
        folder = Path(tempfile.mkdtemp(prefix="audit-bench-", dir=args.data_dir))
        try:
            yield f"file://{folder}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    async with databases.postgres_schema(f"audit_bench_{uuid.uuid4().hex[:10]}", args.postgres_dsn) as dsn:
        yield dsn


async def postgres_settings(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            name: str(await conn.fetchval(f"SHOW {name}")) for name in ("fsync", "synchronous_commit", "server_version")
        }
    finally:
        await conn.close()


# -- appends -------------------------------------------------------------------


async def drive(writers: int, seconds: float, append: Any) -> tuple[list[float], float]:
    """``writers`` tasks appending back to back for ``seconds``; returns latencies and wall time."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def writer(n: int) -> None:
        tenant = n
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await append(f"tenant-{tenant % TENANTS}")
            latencies.append(time.perf_counter() - started)
            tenant += writers

    started = time.perf_counter()
    await asyncio.gather(*(writer(n) for n in range(writers)))
    return latencies, time.perf_counter() - started


async def appends_in_process(dsn: str, writers: int, seconds: float) -> dict[str, Any]:
    counting = CountingSink(open_sink(dsn))
    log = AuditLog(cast(Sink, counting), load(fresh_keys()), checkpoint_interval=0)
    await log.start()
    body = payload_bytes()
    try:

        async def append(tenant: str) -> None:
            await log.append(Draft(tenant, actor="agent", action="tool_call", session_id="s", payload=body))

        await drive(writers, 0.3, append)  # warm up: tenants' heads and keys created
        before = counting.writes
        latencies, wall = await drive(writers, seconds, append)
        writes = counting.writes - before
    finally:
        await log.stop()
    stats = latency_stats(latencies, wall)
    return {**stats.as_dict(), "durable_writes": writes, "appends_per_durable_write": round(stats.count / writes, 1)}


async def appends_grpc(dsn: str, writers: int, seconds: float, data_dir: Path) -> dict[str, Any]:
    env = {
        **{f"LOOMFLOW_AUDIT_{k.upper()}": v for k, v in fresh_keys().items()},
        "LOOMFLOW_AUDIT_DSN": dsn,
        "LOOMFLOW_AUTH_JWT_SECRET": SECRET,
        "LOOMFLOW_TRACING": "false",
        "LOOMFLOW_LOG_LEVEL": "warning",
    }
    server_dir = data_dir / f"serve-{uuid.uuid4().hex[:6]}"
    server = ServeProcess("audit", server_dir, env=env).start()
    token = mint_token(AuthSettings(jwt_secret=SECRET), "bench-agent", Role.SERVICE)
    metadata = (("authorization", f"Bearer {token}"),)
    body = struct_pb2.Struct()
    body.update(PAYLOAD)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = audit_pb2_grpc.AuditServiceStub(channel)

            async def append(tenant: str) -> None:
                request = audit_pb2.AppendRequest(
                    scope=tenancy_pb2.UserScope(user_id=tenant),
                    actor="agent",
                    action="tool_call",
                    session_id="s",
                    payload=body,
                )
                await stub.Append(request, metadata=metadata, timeout=30)

            await drive(writers, 0.3, append)
            latencies, wall = await drive(writers, seconds, append)
    finally:
        server.stop()
        shutil.rmtree(server_dir, ignore_errors=True)
    return latency_stats(latencies, wall).as_dict()


# -- verification ----------------------------------------------------------------


def generate(key: bytes, count: int) -> Iterator[Entry]:
    """``count`` valid entries over TENANTS chains, interleaved as a busy log stores them."""
    heads: dict[str, tuple[int, bytes]] = {}
    ciphertext = os.urandom(120)
    for n in range(count):
        tenant = f"tenant-{n % TENANTS}"
        seq, prev = heads.get(tenant, (0, bytes(32)))
        entry = seal(
            key,
            seq=seq + 1,
            ts_us=1_700_000_000_000_000 + n,
            user_id=tenant,
            session_id="s",
            run_id=f"run-{n // 7}",
            actor="agent",
            action="tool_call",
            payload=ciphertext,
            decision_id="",
            prev_mac=prev,
        )
        heads[tenant] = (entry.seq, entry.mac)
        yield entry


def chunks(entries: Iterator[Entry], size: int) -> Iterator[list[Entry]]:
    while chunk := list(itertools.islice(entries, size)):
        yield chunk


VERIFY_REPEATS = 3
"""Each verification is timed this many times; the median is the figure (the machine is shared)."""


def summary(count: int, seconds: list[float]) -> dict[str, Any]:
    median = statistics.median(seconds)
    return {
        "entries": count,
        "seconds": round(median, 3),
        "per_second": round(count / median),
        "runs_per_second": [round(count / s) for s in seconds],
    }


async def timed_verify(source: str, key: bytes, count: int) -> dict[str, Any]:
    """What `loomflow audit verify <source>` does: open read-only, verify every chain."""
    seconds: list[float] = []
    for _ in range(VERIFY_REPEATS):
        started = time.perf_counter()
        sink = open_sink(source, readonly=True)
        await sink.open()
        try:
            reports, unreadable = await sink.verify(key, None, None)
        finally:
            await sink.close()
        seconds.append(time.perf_counter() - started)
        assert all(r.ok for r in reports), "the generated log should verify"
        assert not unreadable
    return summary(count, seconds)


async def verify_file(key: bytes, count: int, data_dir: Path) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="audit-verify-", dir=data_dir))
    try:
        with (folder / "entries.jsonl").open("wb") as out:
            for chunk in chunks(generate(key, count), 10_000):
                out.write(b"".join(jsonl.encode(e) for e in chunk))
        size = (folder / "entries.jsonl").stat().st_size
        point = await timed_verify(str(folder), key, count)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {**point, "file_bytes": size}


async def verify_postgres(key: bytes, count: int, args: argparse.Namespace) -> dict[str, Any]:
    async with sink_dsn("postgres", args) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            for chunk in chunks(generate(key, count), 50_000):
                records = [entry_record(e) for e in chunk]
                await conn.copy_records_to_table("audit_entries", records=records, columns=ENTRY_COLUMNS)
            await conn.execute("VACUUM ANALYZE audit_entries")
        finally:
            await conn.close()
        return await timed_verify(dsn, key, count)


def verify_in_memory(key: bytes, entries: list[Entry]) -> dict[str, Any]:
    seconds: list[float] = []
    for _ in range(VERIFY_REPEATS):
        started = time.perf_counter()
        reports = verify_entries(key, entries)
        seconds.append(time.perf_counter() - started)
        assert all(r.ok for r in reports)
    return summary(len(entries), seconds)


# -- the run -------------------------------------------------------------------


def plot(results: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    series = [
        (s, mode) for s in results["appends"] for mode in ("in_process", "grpc") if results["appends"][s].get(mode)
    ]
    width = 0.8 / max(1, len(series))
    for i, (sink, mode) in enumerate(series):
        points = results["appends"][sink][mode]
        xs = [n + (i - (len(series) - 1) / 2) * width for n in range(len(WRITERS))]
        values = [points[str(w)]["per_second"] for w in WRITERS]
        bars = left.bar(xs, values, width, label=f"{sink}, {mode.replace('_', '-')}")
        left.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=7, rotation=90, padding=2)
    left.axhline(TARGET_APPENDS, color="red", linestyle="--", linewidth=1, label="target 10,000/s")
    left.set_xticks(range(len(WRITERS)), [f"{w} writers" for w in WRITERS])
    left.set_ylabel("durable appends / s")
    left.set_title("Audit appends, acknowledged after fsync / COMMIT")
    left.legend(fontsize=8)

    verify = results["verify"]
    names = [n for n in ("in_memory", "file", "postgres") if n in verify]
    labels = [{"in_memory": "entries in memory", "file": "file log", "postgres": "Postgres"}[n] for n in names]
    rates = [verify[n]["per_second"] for n in names]
    bars = right.bar(labels, rates, color="tab:green")
    right.bar_label(bars, labels=[f"{v:,.0f}\n{1e6 / v:.1f} s/M" for v in rates], fontsize=7)
    right.axhline(TARGET_VERIFY, color="red", linestyle="--", linewidth=1, label="target 200,000/s")
    right.set_ylabel("entries verified / s")
    right.set_title("Verify: read, parse, recompute every mac")
    right.tick_params(axis="x", labelsize=7)
    right.legend(fontsize=8)
    title = f"loomflow audit — {results['machine_note']}"
    if "postgres_settings" in results:
        settings = results["postgres_settings"]
        title += f"; Postgres fsync={settings['fsync']}, synchronous_commit={settings['synchronous_commit']}"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = plot_path("audit_append")
    fig.savefig(path, dpi=110)
    return path


async def main() -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--sinks", default="file,postgres", help="comma-separated: file, postgres")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per point")
    parser.add_argument("--verify-entries", type=int, default=1_000_000)
    parser.add_argument("--postgres-dsn", default=os.environ.get("LOOMFLOW_TEST_POSTGRES_DSN", ""))
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=REPO / "bench" / "results" / "tmp",
        help="where file logs are written (a real disk: fsync on tmpfs proves nothing)",
    )
    parser.add_argument("--skip-grpc", action="store_true")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    sinks = [s for s in args.sinks.split(",") if s and (s != "postgres" or args.postgres_dsn)]
    if "postgres" in args.sinks and not args.postgres_dsn:
        print("postgres: no DSN (set LOOMFLOW_TEST_POSTGRES_DSN or --postgres-dsn); skipped", file=sys.stderr)

    results: dict[str, Any] = {"targets": {"appends_per_second": TARGET_APPENDS, "verify_per_second": TARGET_VERIFY}}
    results["appends"] = {}
    if "postgres" in sinks:
        results["postgres_settings"] = await postgres_settings(args.postgres_dsn)
    for sink in sinks:
        results["appends"][sink] = {"in_process": {}, "grpc": {}}
        for writers in WRITERS:
            async with sink_dsn(sink, args) as dsn:
                point = await appends_in_process(dsn, writers, args.seconds)
            results["appends"][sink]["in_process"][str(writers)] = point
            print(
                f"{sink:8} in-process {writers:3} writers: {point['per_second']:9,.0f}/s "
                f"p50 {point['p50_ms']:.2f} ms p99 {point['p99_ms']:.2f} ms, "
                f"{point['appends_per_durable_write']} appends per durable write",
                file=sys.stderr,
            )
            if not args.skip_grpc:
                async with sink_dsn(sink, args) as dsn:
                    point = await appends_grpc(dsn, writers, args.seconds, args.data_dir)
                results["appends"][sink]["grpc"][str(writers)] = point
                print(
                    f"{sink:8} grpc       {writers:3} writers: {point['per_second']:9,.0f}/s "
                    f"p50 {point['p50_ms']:.2f} ms p99 {point['p99_ms']:.2f} ms",
                    file=sys.stderr,
                )

    key = os.urandom(32)
    in_memory = list(generate(key, max(1, args.verify_entries // 4)))
    results["verify"] = {"in_memory": verify_in_memory(key, in_memory)}
    del in_memory
    gc.collect()
    if "file" in sinks:
        results["verify"]["file"] = await verify_file(key, args.verify_entries, args.data_dir)
    if "postgres" in sinks:
        results["verify"]["postgres"] = await verify_postgres(key, args.verify_entries, args)
    for name, point in results["verify"].items():
        print(f"verify {name}: {point['per_second']:,}/s", file=sys.stderr)

    missed = []
    for sink, modes in results["appends"].items():
        best = max(p["per_second"] for p in modes["in_process"].values())
        if best < TARGET_APPENDS:
            missed.append(f"{sink} in-process appends peak at {best:,.0f}/s < {TARGET_APPENDS:,.0f}/s")
    for name, point in results["verify"].items():
        if point["per_second"] < TARGET_VERIFY:
            missed.append(f"verify {name} at {point['per_second']:,}/s < {TARGET_VERIFY:,.0f}/s")
    results["missed_targets"] = missed
    load_average = os.getloadavg()[0]
    results["machine_note"] = f"{os.cpu_count()} CPUs, load average {load_average:.1f} when the run ended"
    path = write_results("audit_append", results)
    print(f"results: {path}\nplot: {plot(results)}", file=sys.stderr)
    return verdict(missed)
