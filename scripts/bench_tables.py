"""Renders the README's benchmark tables from bench/results/*.json, with each run's machine facts.

    python scripts/bench_tables.py            # prints every table
    python scripts/bench_tables.py --write    # rewrites the tables inside README.md

README.md carries each table between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->`;
tests/test_readme.py fails when one differs from what this script renders, so no benchmark figure
in the README is typed by hand: re-run a benchmark, then run this script with --write.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"

Json = dict[str, Any]


def load(name: str) -> Json:
    loaded: Json = json.loads((RESULTS / name).read_text())
    return loaded


def num(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def machine_line(data: Json, command: str) -> str:
    """One line naming when and where a result was measured, and the command that reproduces it."""
    machine = data.get("machine", {})
    when = str(machine.get("measured_at", "?")).replace("T", " ").rstrip("Z")[:16]
    load_1m = machine.get("load_average_1m")
    facts = [
        f"measured {when} UTC",
        f"{machine.get('cpus', '?')} CPUs",
        f"load average {load_1m}" if load_1m is not None else "",
        f"Python {machine.get('python', '?')}",
        f"`{data.get('command') or command}`",
    ]
    return "_" + " · ".join(f for f in facts if f) + "_\n"


def race() -> str:
    data = load("race.json")
    lanes = ("one-process", "per-service")
    lines = [
        "| users | framework turns/s | ours, one process | ours, per service | p50 / p99 ms framework "
        "| one process | per service | RSS KB/tenant framework | one process | per service |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for point in data["points"]:
        fw = point["framework"]
        cells = [num(point["users"]), num(fw["turns_per_second"])]
        cells += [f"{num(point[lane]['turns_per_second'])} ({point[f'ratio_{lane}']:.2f}×)" for lane in lanes]
        cells += [f"{fw['p50_ms']:.0f} / {fw['p99_ms']:.0f}"]
        cells += [f"{point[lane]['p50_ms']:.0f} / {point[lane]['p99_ms']:.0f}" for lane in lanes]
        cells += [f"{fw['rss_kb_per_tenant']:.1f}"] + [f"{point[lane]['rss_kb_per_tenant']:.1f}" for lane in lanes]
        lines.append("| " + " | ".join(cells) + " |")
    scaling, alone = data["throughput_last_over_first"], data["unloaded_latency_ms"]
    first, last = data["points"][0]["users"], data["points"][-1]["users"]
    violations = sum(p[lane]["isolation_violations"] for p in data["points"] for lane in lanes)
    mismatches = sum(p[lane]["budget_mismatches"] for p in data["points"] for lane in lanes)
    summary = (
        f"\nThroughput at {num(last)} users over throughput at {num(first)}: framework "
        f"**{scaling['framework']:.2f}**, ours **{scaling['one-process']:.2f}** (one process) and "
        f"**{scaling['per-service']:.2f}** (per service). Unloaded turn latency (one new user at a time, "
        f"through all five services): p50 **{alone['one-process']['p50_ms']:.2f} ms** (one process) and "
        f"**{alone['per-service']['p50_ms']:.2f} ms** (per service), p99 {alone['one-process']['p99_ms']:.1f} and "
        f"{alone['per-service']['p99_ms']:.1f} ms. Isolation violations: {violations}; budget mismatches: "
        f"{mismatches}.\n"
    )
    return "\n".join(lines) + "\n" + summary + "\n" + machine_line(data, "python bench/race/run.py")


def multi_tenant() -> str:
    data = load("multi_tenant.json")
    lines = [
        "| topology | turns/s | p50 | p99 | RSS fit | isolation violations | budget mismatches |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for run in data["runs"]:
        lat, fit = run["latency"], run["rss_fit"]
        name = {"one-process": "one process", "per-service": f"per service ({run['processes']} processes)"}
        lines.append(
            f"| {name.get(run['topology'], run['topology'])} | {num(run['turns_per_second'])} "
            f"| {lat['p50_ms']:.0f} ms | {lat['p99_ms']:.0f} ms "
            f"| {fit['kb_per_tenant']:.0f} KB/tenant, r² {fit['r2']:.2f} "
            f"| {run['isolation_violations']} | {run['budget_mismatches']} |"
        )
    users = data["runs"][0]["users"]
    turns = data["runs"][0]["turns_per_user"]
    return (
        "\n".join(lines) + "\n\n" + machine_line(data, f"python bench/multi_tenant.py --users {users} --turns {turns}")
    )


def ghz() -> str:
    data = load("ghz/summary.json")
    lines = ["| RPC | req/s | p50 | p95 | p99 | errors |", "|---|---:|---:|---:|---:|---:|"]
    order = ["recall", "remember", "reserve", "commit", "check", "append", "run"]
    calls = data["calls"]
    for name in [n for n in order if n in calls] + sorted(set(calls) - set(order)):
        call = calls[name]
        errors = round(call["error_rate"] * call["count"])
        lines.append(
            f"| {name.capitalize()} | {num(call['rps'])} | {call['p50_ms']:.0f} ms | {call['p95_ms']:.0f} ms "
            f"| {call['p99_ms']:.0f} ms | {errors} |"
        )
    data.setdefault("command", "python bench/ghz/run.py")
    return "\n".join(lines) + "\n\n" + machine_line(data, "python bench/ghz/run.py")


def measured_on(data: Json) -> str:
    return str(data["machine"]["measured_at"])[:10]


def _memory_row() -> list[str]:
    data = load("memory_recall.json")
    verdicts = data["verdicts"]
    users = data["settings"]["users"]
    # The target is judged on warm recalls (memory_recall.check_targets); direct / through gRPC.
    warm = {k.removesuffix(" warm"): v for k, v in verdicts["p99_ratio"].items() if k.endswith(" warm")}
    backends = dict.fromkeys(k.split()[0] for k in warm)
    ratios = ", ".join(f"{b} {warm.get(f'{b} direct', 0.0):.2f} / {warm.get(f'{b} grpc', 0.0):.2f}" for b in backends)
    unmeasured = [k for k, v in verdicts["p99_ratio"].items() if isinstance(v, str)]
    figures = (
        f"SQLite through gRPC {num(verdicts['sqlite_recalls_per_second'])} Recall/s (slowest of "
        f"{', '.join(num(u) for u in users)} users); warm p99 at {num(users[-1])} users over {num(users[0])}, "
        f"direct / gRPC: {ratios}"
        + (f"; not measured at {num(users[-1])}: {', '.join(unmeasured)}" if unmeasured else "")
    )
    targets = data["targets"]
    target = (
        f"p99 ratio ≤ {targets['p99_ratio_max']}; ≥ {num(targets['sqlite_recalls_per_second_min'])} Recall/s on SQLite"
    )
    met = "**yes**" if not data["missed"] else f"**no**: {'; '.join(map(str, data['missed']))}"
    return [
        "[Memory recall](docs/memory.md#benchmark)",
        f"`{data['command']}`",
        figures,
        target,
        met,
        measured_on(data),
    ]


def _budget_row() -> list[str]:
    data = load("budget_ledger.json")
    mode = data["targets"]["judged_mode"]
    throughput = data["throughput"]
    pairs = ", ".join(
        f"{backend} {num(throughput[backend][mode]['pairs_per_second'])}"
        for backend in ("inprocess", "redis", "postgres", "floor")
        if backend in throughput and mode in throughput[backend]
    )
    rss = "; ".join(f"{num(r['bytes_per_idle_tenant'])} B per idle tenant at {num(r['tenants'])}" for r in data["rss"])
    targets = data["targets"]["pairs_per_second"]
    target = ", ".join(f"≥ {num(v)} {k}" for k, v in targets.items()) + (
        f"; ≤ {num(data['targets']['rss_bytes_per_idle_tenant'])} B per idle tenant"
    )
    met = "**yes**" if not data["missed"] else f"**no**: {'; '.join(map(str, data['missed']))}"
    return [
        "[Budget Reserve+Commit pairs/s](docs/budget.md#benchmarks)",
        f"`{data['command']}`",
        f"{pairs} ({mode}); {rss}",
        target,
        met,
        measured_on(data),
    ]


def _policy_row() -> list[str]:
    data = load("policy_check.json")
    verdict, targets = data["verdict"], data["targets"]
    figures = (
        f"{num(verdict['best_checks_per_second_python_client'])} Check/s through gRPC "
        f"(floor with an empty handler {num(verdict['floor_checks_per_second_python_client'])}/s; ghz "
        f"{num(verdict['best_checks_per_second_ghz'])}/s); worst warm decision "
        f"{verdict['worst_warm_decision_cpu_mean_us']:.1f} µs CPU"
    )
    met = "**yes**" if verdict["throughput_target_met"] and verdict["decision_target_met"] else "**no**"
    target = f"≥ {num(targets['checks_per_second'])}/s; decision ≤ {targets['decision_us']:.0f} µs"
    return [
        "[Policy Check](docs/policy.md)",
        f"`{data['command'].strip()}`",
        figures,
        target,
        met,
        measured_on(data),
    ]


def _audit_row() -> list[str]:
    data = load("audit_append.json")
    appends, verify = data["appends"], data["verify"]
    durable = ", ".join(
        f"{sink} {num(appends[sink]['in_process'][writers]['per_second'])}/s with {writers} writers"
        for sink in ("file", "postgres")
        for writers in ("16", "256")
    )
    grpc = max(appends[sink]["grpc"][w]["per_second"] for sink in appends for w in appends[sink]["grpc"])
    figures = (
        f"durable appends in-process: {durable}; through gRPC up to {num(grpc)}/s; verify "
        f"{num(verify['file']['per_second'])} entries/s (file), {num(verify['postgres']['per_second'])}/s (Postgres)"
    )
    targets = data["targets"]
    target = f"≥ {num(targets['appends_per_second'])} durable appends/s; verify ≥ {num(targets['verify_per_second'])}/s"
    met = "**yes**" if not data["missed_targets"] else f"**no**: {'; '.join(map(str, data['missed_targets']))}"
    return [
        "[Audit appends and verify](docs/audit.md)",
        "`python bench/audit_append.py`",
        figures,
        target,
        met,
        measured_on(data),
    ]


def _agent_turn_row() -> list[str]:
    data = load("agent_turn.json")
    results = data["results"]
    figures = ", ".join(f"{lane} p50 {results[lane]['echo']['p50_ms']:.2f} ms" for lane in results)
    met = "**yes**" if data["target_met"] else "**no**"
    return [
        "[Agent turn](docs/agent.md) (echo model, returning tenants)",
        f"`{data['command']}`",
        figures,
        f"p50 ≤ {data['target_echo_p50_ms']} ms",
        met,
        measured_on(data),
    ]


def _tracing_row() -> list[str]:
    data = load("tracing_overhead.json")
    medians = data["medians"]
    figures = "; ".join(
        f"{mode} {medians[mode]['cpu_ms_per_run']:.2f} CPU ms per run (×{medians[mode]['cpu_vs_off']:.2f})"
        for mode in medians
    )
    return [
        "[Tracing overhead](docs/observability.md)",
        "`python bench/tracing_overhead.py`",
        figures,
        "—",
        "—",
        measured_on(data),
    ]


def per_service() -> str:
    lines = ["| benchmark | command | figures | target | met? | measured |", "|---|---|---|---|---|---|"]
    for row in (_memory_row, _budget_row, _policy_row, _audit_row, _agent_turn_row, _tracing_row):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row()) + " |")
    return "\n".join(lines) + "\n"


def noisy_neighbour() -> str:
    data = load("noisy_neighbour.json")
    alone = {s["limits"]: s["quiet"]["p99_ms"] for s in data["scenarios"] if s["flood"] == "none"}
    lines = [
        "| limits | flood | quiet p50 | quiet p99 | p99 vs alone | quiet errors | noisy OK/s | noisy refused/s "
        "| load average (start → end) |",
        "|---|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for s in data["scenarios"]:
        quiet, errors = s["quiet"], sum(n for code, n in s["quiet_codes"].items() if code != "OK")
        base = alone.get(s["limits"])
        ratio = f"{quiet['p99_ms'] / base:.1f}×" if base and s["flood"] != "none" else "—"
        load_avg = s.get("load_average_1m", {})
        lines.append(
            f"| {s['limits']} | {s['flood']} | {num(quiet['p50_ms'], 1)} ms | {num(quiet['p99_ms'], 1)} ms | {ratio} "
            f"| {errors} | {num(s['noisy_ok_per_second'], 1) if s['flood'] != 'none' else '—'} "
            f"| {num(s['noisy_refused_per_second'], 1) if s['flood'] != 'none' else '—'} "
            f"| {load_avg.get('start', '?')} → {load_avg.get('end', '?')} |"
        )
    tools = data.get("tools_flood_quiet_p99_vs_quiet")
    verdict = (
        f"\nTools flood: the quiet tenants' p99 was {tools}× their p99 alone (bound: 2×): "
        f"**{'met' if float(tools) <= 2 else 'missed'}**.\n"
        if tools is not None
        else ""
    )
    return machine_line(data, "python bench/noisy_neighbour.py") + "\n" + "\n".join(lines) + "\n" + verdict


TABLES: dict[str, Callable[[], str]] = {
    "race": race,
    "multi-tenant": multi_tenant,
    "ghz": ghz,
    "per-service": per_service,
}

DOC_TABLES: dict[Path, dict[str, Callable[[], str]]] = {
    ROOT / "docs" / "reliability.md": {"noisy-neighbour": noisy_neighbour},
}
"""Tables kept the same way in pages under docs/ (tests/reliability/test_noisy_neighbour_table.py checks them)."""


def render_into(text: str, tables: dict[str, Callable[[], str]] | None = None, page: str = "README.md") -> str:
    """The page's text (the README's by default) with every bench table replaced by what the results say."""
    for name, render in (TABLES if tables is None else tables).items():
        start, end = f"<!-- bench:{name}:start -->\n", f"<!-- bench:{name}:end -->"
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), flags=re.S)
        found = pattern.search(text)
        if found is None:
            raise SystemExit(f"{page} lacks the bench:{name} markers")
        text = text[: found.start()] + start + render() + end + text[found.end() :]
    return text


def main(argv: list[str]) -> int:
    if "--write" in argv:
        README.write_text(render_into(README.read_text()))
        print(f"rewrote {len(TABLES)} benchmark tables in {README.relative_to(ROOT)}")
        for page, tables in DOC_TABLES.items():
            page.write_text(render_into(page.read_text(), tables, str(page.relative_to(ROOT))))
            print(f"rewrote {len(tables)} benchmark tables in {page.relative_to(ROOT)}")
        return 0
    for name, render in [*TABLES.items(), *(item for tables in DOC_TABLES.values() for item in tables.items())]:
        sys.stdout.write(f"<!-- bench:{name} -->\n{render()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
