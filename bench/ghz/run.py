"""Runs the ghz load suite: one config per hot RPC, against a live loomflow.

    python -m bench ghz                  # full run: every config, results in bench/results/ghz/
    python -m bench ghz --quick          # the short CI variant
    python -m bench ghz --calls recall,check --address 127.0.0.1:50051 --token "$TOKEN" --report-only

ghz reads the schema from clients/loomflow.protoset, or by server reflection with --reflection
(both work; the server's reflection resolves method symbols, see loomflow.kernel.reflection).

Without --address it starts `loomflow serve` (all five services, one process, secure mode) on a
free port, seeds memory and open budget reservations, then runs ghz (installed pinned by
scripts/install-tools.sh) with a service token. Every report is kept as JSON and checked against
bench/ghz/thresholds.json; the run exits non-zero when any report misses its thresholds.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from bench.harness import REPO, argument_parser, machine, plot_path, verdict
from bench.topology import secure_env
from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.testing.processes import ServeProcess
from loomflow.v1 import budget_pb2, budget_pb2_grpc, memory_pb2, memory_pb2_grpc, tenancy_pb2

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
THRESHOLDS = HERE / "thresholds.json"
RESULTS = REPO / "bench" / "results" / "ghz"
PROTOSET = REPO / "clients" / "loomflow.protoset"
TENANTS = 200
REFLECTION_HINT = (
    "\nghz resolves the call's method symbol (loomflow.v1.MemoryService.Recall) through server reflection; "
    "grpcio-reflection cannot under protobuf's upb backend, which loomflow.kernel.reflection fixes: this "
    "server predates it. Run without --reflection (the protoset clients/loomflow.protoset)."
)


def ghz_binary() -> str:
    found = shutil.which("ghz") or str(Path(os.popen("go env GOPATH").read().strip() or "~/go") / "bin" / "ghz")
    if not Path(found).exists():
        subprocess.run(["bash", str(REPO / "scripts" / "install-tools.sh")], check=True)
    return found


async def seed(address: str, token: str, reservations: int) -> list[dict[str, Any]]:
    """Gives every tenant some episodes to recall, and opens reservations for the Commit config."""
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        memory = memory_pb2_grpc.MemoryServiceStub(channel)
        budget = budget_pb2_grpc.BudgetServiceStub(channel)
        sem = asyncio.Semaphore(32)

        async def remember(tenant: int, n: int) -> None:
            async with sem:
                await memory.Remember(
                    memory_pb2.RememberRequest(
                        scope=tenancy_pb2.UserScope(user_id=f"tenant-{tenant}"),
                        session_id="seed",
                        input=f"reminder {n}: the quarterly report for tenant {tenant} is due on friday",
                        output="noted",
                    ),
                    metadata=metadata,
                    timeout=30,
                )

        async def reserve(n: int) -> dict[str, Any]:
            scope = tenancy_pb2.UserScope(user_id=f"tenant-{n % TENANTS}")
            async with sem:
                reply = await budget.Reserve(
                    budget_pb2.ReserveRequest(
                        scope=scope,
                        call_id=f"ghz-seed-{n}-{secrets.token_hex(4)}",
                        model="echo",
                        estimate=budget_pb2.Usage(input_tokens=100, output_tokens=50),
                        ttl_ms=3_600_000,
                    ),
                    metadata=metadata,
                    timeout=30,
                )
            commit = budget_pb2.CommitRequest(
                scope=scope,
                reservation_id=reply.reservation_id,
                actual=budget_pb2.Usage(input_tokens=80, output_tokens=40),
            )
            return json_format.MessageToDict(commit, preserving_proto_field_name=True)

        await asyncio.gather(*(remember(t, n) for t in range(TENANTS) for n in range(5)))
        return list(await asyncio.gather(*(reserve(n) for n in range(reservations))))


def run_config(
    ghz: str,
    name: str,
    address: str,
    token: str,
    total: int,
    concurrency: int,
    commits: list[dict[str, Any]],
    results: Path,
    reflection: bool = False,
) -> dict[str, Any]:
    config = json.loads((CONFIGS / f"{name}.json").read_text())
    config.pop("_comment", None)
    if config.get("data") == "@reservations":
        config["data"] = commits[:total]
    config.update(
        {
            "host": address,
            "insecure": True,
            "total": total,
            "concurrency": concurrency,
            "connections": 2,
            "metadata": {"authorization": f"Bearer {token}"},
            "timeout": "20s",
        }
    )
    if not reflection:
        config["protoset"] = str(PROTOSET)
    results.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(config, handle)
    report_path = results / f"{name}.json"
    report_path.unlink(missing_ok=True)
    done = subprocess.run(
        [ghz, "--config", handle.name, "--format", "json", "--output", str(report_path)],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.unlink(handle.name)
    if not report_path.exists():
        hint = REFLECTION_HINT if reflection and "Symbol not found" in done.stderr else ""
        raise SystemExit(f"ghz: {name}: no report (exit {done.returncode}): {done.stderr.strip()}{hint}")
    report: dict[str, Any] = json.loads(report_path.read_text())
    return report


def summarize(report: dict[str, Any]) -> dict[str, float]:
    latencies = {d["percentage"]: d["latency"] / 1e6 for d in report.get("latencyDistribution") or []}
    codes: dict[str, int] = report.get("statusCodeDistribution") or {}
    total = sum(codes.values()) or 1
    return {
        "rps": round(float(report.get("rps", 0.0)), 1),
        "p50_ms": round(latencies.get(50, float("inf")), 3),
        "p95_ms": round(latencies.get(95, float("inf")), 3),
        "p99_ms": round(latencies.get(99, float("inf")), 3),
        "error_rate": round(1 - codes.get("OK", 0) / total, 5),
        "count": int(report.get("count", 0)),
    }


def check(name: str, summary: dict[str, float], limits: dict[str, float]) -> list[str]:
    failures = []
    if summary["rps"] < limits["min_rps"]:
        failures.append(f"{name}: {summary['rps']} req/s < floor {limits['min_rps']}")
    for p in ("p50", "p95", "p99"):
        if summary[f"{p}_ms"] > limits[f"max_{p}_ms"]:
            failures.append(f"{name}: {p} {summary[f'{p}_ms']} ms > ceiling {limits[f'max_{p}_ms']} ms")
    if summary["error_rate"] > limits["max_error_rate"]:
        failures.append(f"{name}: error rate {summary['error_rate']} > {limits['max_error_rate']}")
    return failures


def plot(summaries: dict[str, dict[str, float]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summaries)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(names, [summaries[n]["rps"] for n in names], color="#4477aa")
    left.set_title("ghz throughput (req/s)")
    for i, p in enumerate(("p50_ms", "p95_ms", "p99_ms")):
        right.bar([x + i * 0.27 for x in range(len(names))], [summaries[n][p] for n in names], width=0.27, label=p)
    right.set_xticks([x + 0.27 for x in range(len(names))], names)
    right.set_title("latency (ms)")
    right.legend()
    fig.tight_layout()
    path = plot_path("ghz")
    fig.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--calls", default=",".join(sorted(p.stem for p in CONFIGS.glob("*.json"))))
    parser.add_argument("--total", type=int, default=20_000, help="requests per call")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="short CI run: 400 requests per call, concurrency 16")
    parser.add_argument("--address", help="use a running suite instead of starting one")
    parser.add_argument("--token", help="bearer token for --address (a service or operator token)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where the ghz reports go")
    parser.add_argument(
        "--reflection", action="store_true", help="let ghz learn the schema by server reflection, not the protoset"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="print the figures without checking bench/ghz/thresholds.json (a suite of your own, e.g. `make serve`, "
        "logs every call and is not what the thresholds were set for)",
    )
    args = parser.parse_args(argv)
    total, concurrency = (400, 16) if args.quick else (args.total, args.concurrency)
    calls = [c.strip() for c in args.calls.split(",") if c.strip()]
    thresholds = json.loads(THRESHOLDS.read_text())["quick" if args.quick else "full"]
    ghz = ghz_binary()

    server: ServeProcess | None = None
    if args.address:
        address, token = args.address, args.token or ""
    else:
        secret = secrets.token_hex(32)
        token = mint_token(AuthSettings(jwt_secret=secret), "ghz", Role.SERVICE, ttl_seconds=24 * 3600)
        server = ServeProcess(
            "memory,budget,policy,audit,agent",
            Path(tempfile.mkdtemp(prefix="loomflow-ghz-")),
            env=secure_env(secret),
        ).start()
        address = server.address
    try:
        commits = asyncio.run(seed(address, token, total if "commit" in calls else 0))
        summaries: dict[str, dict[str, float]] = {}
        failures: list[str] = []
        for name in calls:
            print(f"ghz: {name} ({total} requests, concurrency {concurrency})", file=sys.stderr, flush=True)
            summaries[name] = summarize(
                run_config(ghz, name, address, token, total, concurrency, commits, args.results_dir, args.reflection)
            )
            limits = thresholds[name]
            if args.report_only:  # errors still fail: they are not a matter of machine or logging
                limits = {**limits, "min_rps": 0, **{f"max_{p}_ms": float("inf") for p in ("p50", "p95", "p99")}}
            failures += check(name, summaries[name], limits)
            print(f"ghz: {name}: {summaries[name]}", file=sys.stderr, flush=True)
    finally:
        if server is not None:
            server.stop()
    summary_path = args.results_dir / "summary.json"
    summary_path.write_text(
        json.dumps(
            {
                "machine": machine(),
                "total": total,
                "concurrency": concurrency,
                "calls": summaries,
                "thresholds": thresholds,
                "failures": failures,
            },
            indent=2,
        )
        + "\n"
    )
    plotted = plot(summaries) if args.results_dir == RESULTS else "(not plotted outside bench/results)"
    print(f"ghz: summary in {summary_path}, plot in {plotted}", file=sys.stderr)
    return verdict(failures, "ghz: THRESHOLD MISSED")
