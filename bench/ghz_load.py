"""Drives one unary RPC with ghz (a Go load generator) over a given list of requests.

A benchmark that measures a server's throughput should not share the machine's cores with a
Python client costing more CPU per call than the server itself: ghz costs a fraction of it. The
requests are ghz's per-call data, taken in order: serialized messages, each prefixed with its length
(``--binary-file``; measured here, JSON data with its per-call templating cost ghz ~45 % more CPU per
call), so a run sends exactly the calls the caller chose. Latencies come from ghz's per-call
details; the client's CPU from the OS's accounting of the finished child.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.message import Message

from bench.ghz.run import PROTOSET, ghz_binary


@dataclass(frozen=True)
class GhzRun:
    latencies_s: list[float]
    wall_seconds: float
    client_cpu_seconds: float


def varint(value: int) -> bytes:
    """Protobuf's base-128 varint: the length prefix of each message in ghz's binary data file."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def describe(concurrency: int, connections: int) -> str:
    """What the results say generated the load."""
    return f"ghz (Go), {concurrency} in flight over {connections} connections"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_ghz(
    call: str,
    address: str,
    requests: Sequence[Message],
    concurrency: int,
    connections: int,
    metadata: dict[str, str] | None = None,
    protoset: Path = PROTOSET,
) -> GhzRun:
    """Sends every request once (``call`` is ``package.Service.Method``); any non-OK answer is an error."""
    config: dict[str, Any] = {
        "call": call,
        "host": address,
        "insecure": True,
        "protoset": str(protoset),
        "total": len(requests),
        "concurrency": concurrency,
        "connections": connections,
        "timeout": "20s",
    }
    if metadata:
        config["metadata"] = metadata
    with tempfile.TemporaryDirectory(prefix="loomflow-ghz-") as folder:
        config_path, report_path = Path(folder) / "config.json", Path(folder) / "report.json"
        data_path = Path(folder) / "requests.bin"
        wire = (request.SerializeToString() for request in requests)
        data_path.write_bytes(b"".join(varint(len(body)) + body for body in wire))
        config["binary-file"] = str(data_path)
        config_path.write_text(json.dumps(config))
        before = _children_cpu()
        done = subprocess.run(
            [ghz_binary(), "--config", str(config_path), "--format", "json", "--output", str(report_path)],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        client_cpu = _children_cpu() - before
        if not report_path.exists():
            raise SystemExit(f"ghz {call}: no report (exit {done.returncode}): {done.stderr.strip()}")
        report: dict[str, Any] = json.loads(report_path.read_text())
    codes: dict[str, int] = report.get("statusCodeDistribution") or {}
    if set(codes) != {"OK"}:
        raise SystemExit(f"ghz {call}: calls failed: {codes} {report.get('errorDistribution')}")
    details = report.get("details") or []
    if len(details) != len(requests):
        raise SystemExit(f"ghz {call}: {len(details)} call details for {len(requests)} requests")
    return GhzRun(
        latencies_s=[d["latency"] / 1e9 for d in details],
        wall_seconds=report["total"] / 1e9,
        client_cpu_seconds=client_cpu,
    )


async def run_ghz_async(
    call: str,
    address: str,
    requests: Sequence[Message],
    concurrency: int,
    connections: int,
    protoset: Path = PROTOSET,
) -> GhzRun:
    """:func:`run_ghz` off the event loop (a caller's idle channels stay serviced)."""
    return await asyncio.to_thread(run_ghz, call, address, requests, concurrency, connections, None, protoset)


HEALTH_CHECK_RPC = "grpc.health.v1.Health.Check"


def write_health_protoset(path: Path) -> Path:
    """The standard health service's descriptor (from the installed grpcio-health-checking), for ghz:
    a call through gRPC that does no work of ours, so its rate is the floor a machine puts under any RPC."""
    from grpc_health.v1 import health_pb2

    proto = descriptor_pb2.FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(proto)
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=[proto]).SerializeToString())
    return path
