"""Renders the benchmark tables of README.md and docs/*.md from bench/results/*.json, with each run's
machine facts.

    python scripts/bench_tables.py            # prints every table
    python scripts/bench_tables.py --write    # rewrites the tables inside README.md and docs/*.md

A document carries each table between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->`
(the README must carry README_TABLES; a page may carry any); tests/test_readme.py fails when one
differs from what this script renders, so no benchmark table is typed by hand: re-run a benchmark,
then run this script with --write.
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
DOCS = sorted((ROOT / "docs").glob("*.md"))

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
        f"CPU calibration {machine['cpu_calibration_ms']} ms" if "cpu_calibration_ms" in machine else "",
        f"Python {machine.get('python', '?')}",
        f"`{str(data.get('command') or command).strip()}`",
    ]
    return "_" + " · ".join(f for f in facts if f) + "_\n"


def met(flag: bool) -> str:
    return "**met**" if flag else "**missed**"


def table_with_facts(lines: list[str], data: Json, command: str, verdict: str = "") -> str:
    """A table, the sentence judging its targets (if any), and the machine line of its run."""
    judged = f"\n{verdict}\n" if verdict else ""
    return "\n".join(lines) + "\n" + judged + "\n" + machine_line(data, command)


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
    at = data["points"][0]
    if "cpu_ms_per_turn" in at["framework"]:  # counted since 2026-12-02: what load on the machine does not inflate
        one, per = at["one-process"], at["per-service"]
        summary += (
            f"\nCPU per turn at {num(at['users'])} users (every process of the lane, the load's client included): "
            f"framework **{at['framework']['cpu_ms_per_turn']:.2f} ms**, ours **{one['cpu_ms_per_turn']:.2f} ms** "
            f"(one process; the server {one['server_cpu_ms_per_turn']:.2f}) and **{per['cpu_ms_per_turn']:.2f} ms** "
            f"(per service; the servers {per['server_cpu_ms_per_turn']:.2f}).\n"
        )
    return "\n".join(lines) + "\n" + summary + "\n" + machine_line(data, "python -m bench race")


def race_targets() -> str:
    """The race's targets as the run judged them (bench/race/run.py judge): required, measured, met."""
    data = load("race.json")
    lines = ["| target | required | measured | met? |", "|---|---:|---:|---|"]
    for target in data.get("targets", []):
        unit = "×" if target["unit"] == "x" else target["unit"]
        bound = "≥" if target["higher_is_better"] else "≤"
        met = "**yes**" if target["met"] else f"**no**, missed by {target['missed_by']}"
        lines.append(
            f"| {target['target']} | {bound} {target['required']:g} {unit} | {target['measured']:g} {unit} | {met} |"
        )
    note = f"\n{data['targets_note'][0].upper()}{data['targets_note'][1:]}.\n" if "targets_note" in data else ""
    return "\n".join(lines) + "\n" + note + "\n" + machine_line(data, "python -m bench race")


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
        "\n".join(lines) + "\n\n" + machine_line(data, f"python -m bench multi_tenant --users {users} --turns {turns}")
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
    data.setdefault("command", "python -m bench ghz")
    return "\n".join(lines) + "\n\n" + machine_line(data, "python -m bench ghz")


def measured_on(data: Json) -> str:
    """When and on what the run was measured, short enough for a table cell."""
    facts = data["machine"]
    when = str(facts["measured_at"]).replace("T", " ").rstrip("Z")[:16]
    return f"{when} UTC, {facts['cpus']} CPUs, load {facts.get('load_average_1m', '?')}"


def _p99_ratios(data: Json) -> str:
    """Warm p99 at the largest tenant count over the smallest, direct / through gRPC, per backend."""
    warm = {k.removesuffix(" warm"): v for k, v in data["verdicts"]["p99_ratio"].items() if k.endswith(" warm")}
    backends = dict.fromkeys(k.split()[0] for k in warm)
    return ", ".join(
        f"{b} {warm[f'{b} direct']:.2f} / {warm[f'{b} grpc']:.2f}"
        for b in backends
        if isinstance(warm.get(f"{b} direct"), float) and isinstance(warm.get(f"{b} grpc"), float)
    )


def _memory_row() -> list[str]:
    data = load("memory_recall.json")
    users = data["settings"]["users"]
    run = data["results"]["sqlite"]["grpc"][f"{users[0]}x{data['settings']['episodes_per_user']}"]
    judged = run["concurrent"]
    workers = judged.get("workers", 1)
    figures = (
        f"SQLite through gRPC {num(data['verdicts']['sqlite_recalls_per_second'])} Recall/s "
        f"({data['settings']['embedder']}, slowest of {', '.join(num(u) for u in users)} users; "
        f"{workers} server process{'es' if workers > 1 else ''}, load from {_load_generator(run)})"
    )
    one = _concurrent_runs(run)[0]
    if one is not judged:
        figures += f"; one process: {num(one['per_second'])} Recall/s"
    if (RESULTS / "memory_recall_python_client.json").exists():
        python = load("memory_recall_python_client.json")
        prun = python["results"]["sqlite"]["grpc"][f"{users[0]}x{python['settings']['episodes_per_user']}"]
        when = str(python["machine"]["measured_at"]).replace("T", " ").rstrip("Z")[:16]
        figures += (
            f"; one process, Python client: {num(prun['concurrent']['per_second'])} Recall/s "
            f"(`--client python`, {when} UTC, load {python['machine'].get('load_average_1m', '?')})"
        )
    if len(users) > 1:
        figures += f"; warm p99 at {num(users[-1])} users over {num(users[0])}, direct / gRPC: {_p99_ratios(data)}"
    else:  # a one-size run judges no p99 ratio: quote the last --full run, with its date
        full = load("memory_recall_full.json")
        small, large = full["settings"]["users"][0], full["settings"]["users"][-1]
        figures += (
            f"; warm p99 at {num(large)} users over {num(small)}, direct / gRPC, in the `--full` run of "
            f"{str(full['machine']['measured_at'])[:10]}: {_p99_ratios(full)}"
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
        "`python -m bench audit_append`",
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
        "`python -m bench tracing_overhead`",
        figures,
        "—",
        "—",
        measured_on(data),
    ]


def tracing_overhead() -> str:
    data = load("tracing_overhead.json")
    medians = data["medians"]
    rows = [
        ("off", "`--tracing false`"),
        ("dropped", "`--tracing` (default), no `--otlp-endpoint`: spans dropped"),
        ("recorded", "`--tracing` with an exporter: spans recorded"),
        ("aio_interceptor", "for comparison: the library's aio server interceptor, spans dropped"),
    ]
    lines = ["| mode | CPU ms per run | vs off |", "|---|---|---|"]
    for key, label in rows:
        mode = medians[key]
        versus = "—" if key == "off" else f"×{mode['cpu_vs_off']:.2f}"
        lines.append(f"| {label} | {mode['cpu_ms_per_run']:.2f} | {versus} |")
    return table_with_facts(lines, load("tracing_overhead.json"), "python -m bench tracing_overhead")


def budget_throughput() -> str:
    data = load("budget_ledger.json")
    names = {"floor": "floor (empty handlers)", "inprocess": "in-process", "redis": "Redis", "postgres": "Postgres"}
    lines = [
        "| backend | server tracing | pairs/s measured | pairs per server CPU-second | server CPU per pair "
        "| pair p50 | pair p99 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for backend, label in names.items():
        for mode in ("tracing off", "tracing on"):
            run = data["throughput"].get(backend, {}).get(mode)
            if run is None:
                continue
            latency = run["pair_latency_ms"]
            lines.append(
                f"| {label} | {mode.removeprefix('tracing ')} | {num(run['pairs_per_second'])} "
                f"| {num(run['pairs_per_server_cpu_second'])} | {run['server_cpu_ms_per_pair']:.2f} ms "
                f"| {latency['p50_ms']:.0f} ms | {latency['p99_ms']:.0f} ms |"
            )
    return table_with_facts(lines, load("budget_ledger.json"), "python -m bench budget_ledger")


def budget_rss() -> str:
    data = load("budget_ledger.json")
    lines = ["| tenants (in-process, each idle after one Reserve+Commit) | RSS per idle tenant |", "|---:|---:|"]
    lines += [f"| {num(r['tenants'])} | {num(r['bytes_per_idle_tenant'])} B |" for r in data["rss"]]
    data = load("budget_ledger.json")
    targets, mode = data["targets"], data["targets"]["judged_mode"]
    judged = [
        f"{backend} ≥ {num(floor)} pairs/s: {num(data['throughput'][backend][mode]['pairs_per_second'])}"
        for backend, floor in targets["pairs_per_second"].items()
    ]
    judged.append(
        f"≤ {num(targets['rss_bytes_per_idle_tenant'])} B per idle tenant: "
        + " / ".join(f"{num(r['bytes_per_idle_tenant'])} B" for r in data["rss"])
    )
    met = "**all met**" if not data["missed"] else f"**missed**: {'; '.join(map(str, data['missed']))}"
    verdict = f"\nTargets (judged with {mode}): {met}; {'; '.join(judged)}.\n"
    return table_with_facts(lines, data, "python -m bench budget_ledger", verdict.strip())


def _us(value: float) -> str:
    return f"{value:.2f} µs" if value < 2 else f"{value:.1f} µs"


def policy_decision() -> str:
    scenarios = load("policy_check.json")["decision_time_us"]
    labels = {
        "first rule decides": "first rule decides",
        "last rule decides after 80 candidates": "last rule decides after 80 candidate rules' conditions fail",
        "last rule decides, wire arguments": "the same with wire (`Struct`) arguments",
        "no rule matches, 20 candidates tested": "no rule matches, 20 candidates tested",
        "no glob matches the tool": "no glob matches the tool",
        "tool never seen: 100 globs, then 80 rules": "tool name never seen (100 globs, then 80 rules)",
        "in-process Check (routing, id, metrics)": "whole in-process Check (routing, decision, id, metrics)",
    }
    lines = ["| scenario | CPU mean | p50 | p99 (wall) |", "|---|---|---|---|"]
    for key, label in labels.items():
        run = scenarios[key]
        lines.append(f"| {label} | {_us(run['cpu_mean_us'])} | {_us(run['p50_us'])} | {_us(run['p99_us'])} |")
    data = load("policy_check.json")
    verdict, target = data["verdict"], data["targets"]["decision_us"]
    judged = (
        f"\nTarget: decision ≤ {target:g} µs (the worst warm scenario, CPU mean "
        f"{verdict['worst_warm_decision_cpu_mean_us']:.1f} µs): "
        f"{met(verdict['decision_target_met'])}.\n"
    )
    return table_with_facts(lines, data, "python -m bench policy_check", judged.strip())


def policy_grpc() -> str:
    grpc = load("policy_check.json")["grpc"]
    policy, floor = grpc["policy"], grpc["floor"]
    lines = [
        "| in flight | Check/s | p50 | p99 | server CPU per Check | floor Check/s | floor CPU per call |",
        "|---|---|---|---|---|---|---|",
    ]
    for level in sorted(policy["python_client"], key=int):
        run, base = policy["python_client"][level], floor["python_client"][level]
        latency = run["latency_ms"]
        lines.append(
            f"| {level} | {num(run['checks_per_second'])} | {latency['p50_ms']:.1f} ms | {latency['p99_ms']:.1f} ms "
            f"| {run['server_cpu_us_per_check']:.0f} µs | {num(base['checks_per_second'])} "
            f"| {base['server_cpu_us_per_check']:.0f} µs |"
        )
    for level in sorted(policy["ghz"], key=int):
        run, base = policy["ghz"][level], floor["ghz"][level]
        lines.append(
            f"| ghz, {level} (worst-case decision) | {num(run['checks_per_second'])} | {run['p50_ms']:.1f} ms "
            f"| {run['p99_ms']:.1f} ms | {1e6 / run['checks_per_server_cpu_second']:.0f} µs "
            f"| {num(base['checks_per_second'])} | {1e6 / base['checks_per_server_cpu_second']:.0f} µs |"
        )
    data = load("policy_check.json")
    verdict, target = data["verdict"], data["targets"]["checks_per_second"]
    judged = (
        f"\nTarget: ≥ {num(target)} Checks/s per process: "
        f"{met(verdict['throughput_target_met'])} "
        f"(best in-flight level {num(verdict['best_checks_per_second_python_client'])}/s, "
        f"{100 * verdict['check_share_of_floor']:.0f} % of the floor; ghz on the worst-case decision "
        f"{num(verdict['best_checks_per_second_ghz'])}/s). Load average {data['load_average_1m_before']} when the "
        f"run started, {data['load_average_1m_after']} when it ended.\n"
    )
    return table_with_facts(lines, data, "python -m bench policy_check", judged.strip())


def audit_appends() -> str:
    appends = load("audit_append.json")["appends"]
    lines = [
        "| concurrent writers | file, in-process | Postgres, in-process | file, gRPC | Postgres, gRPC |",
        "|---|---|---|---|---|",
    ]
    for writers in sorted(appends["file"]["in_process"], key=int):
        cells = [writers]
        for sink in ("file", "postgres"):
            run = appends[sink]["in_process"][writers]
            cells.append(f"{num(run['per_second'])} ({run['p50_ms']:.2f} / {run['p99_ms']:.2f} ms)")
        cells += [num(appends[sink]["grpc"][writers]["per_second"]) for sink in ("file", "postgres")]
        lines.append("| " + " | ".join(cells) + " |")
    data = load("audit_append.json")
    target, pg = data["targets"]["appends_per_second"], data["postgres_settings"]
    reached = []
    for sink in ("file", "postgres"):
        runs = appends[sink]["in_process"]
        enough = [int(w) for w in runs if runs[w]["per_second"] >= target]
        reached.append(f"{sink} from {min(enough)} writers on" if enough else f"{sink} **never**")
    verdict = (
        f"\nTarget ≥ {num(target)} durable appends/s in-process: {', '.join(reached)}. Postgres "
        f"{pg['server_version'].split()[0]} with fsync={pg['fsync']}, synchronous_commit={pg['synchronous_commit']}.\n"
    )
    return table_with_facts(lines, data, "python -m bench audit_append", verdict.strip())


def audit_verify() -> str:
    verify = load("audit_append.json")["verify"]
    rows = [
        ("in_memory", f"entries already in memory ({num(verify['in_memory']['entries'])})"),
        ("file", f"file log ({verify['file']['file_bytes'] / 1e6:.0f} MB of JSONL)"),
        ("postgres", "Postgres"),
    ]
    lines = ["| source | entries/s | seconds per million | the three runs |", "|---|---|---|---|"]
    for key, label in rows:
        run = verify[key]
        runs = " / ".join(num(r) for r in run["runs_per_second"])
        lines.append(f"| {label} | {num(run['per_second'])} | {1e6 / run['per_second']:.1f} | {runs} |")
    data = load("audit_append.json")
    target = data["targets"]["verify_per_second"]
    sinks = {"file": "file", "postgres": "Postgres"}
    judged = ", ".join(f"{label} {num(verify[key]['per_second'])}/s" for key, label in sinks.items())
    passed = all(verify[key]["per_second"] >= target for key in sinks)
    verdict = f"\nTarget ≥ {num(target)} entries/s on both sinks: {met(passed)} ({judged}).\n"
    return table_with_facts(lines, data, "python -m bench audit_append", verdict.strip())


def agent_turn() -> str:
    results = load("agent_turn.json")["results"]
    names = {"one-process": "one process (`loomflow serve`)", "per-service": "per service (five processes)"}
    lines = [
        "| topology | echo turn p50 / p99 (one at a time) | tool run p50 (2 model turns, all five services) "
        "| 16 in flight | 64 in flight |",
        "|---|---|---|---|---|",
    ]
    for lane, label in names.items():
        run = results[lane]
        echo, tool = run["echo"], run["tool"]
        loads = {point["in_flight"]: point["per_second"] for point in run["concurrent"]}
        lines.append(
            f"| {label} | {echo['p50_ms']:.2f} / {echo['p99_ms']:.2f} ms | {tool['p50_ms']:.2f} ms "
            f"| {num(loads[16])} turns/s | {num(loads[64])} turns/s |"
        )
    data = load("agent_turn.json")
    p50s = ", ".join(f"{names[lane].split(' (')[0]} {results[lane]['echo']['p50_ms']:.2f} ms" for lane in names)
    verdict = (
        f"\nTarget: echo turn p50 ≤ {data['target_echo_p50_ms']:g} ms, one at a time: "
        f"{met(data['target_met'])} ({p50s}).\n"
    )
    return table_with_facts(lines, data, "python -m bench agent_turn", verdict.strip())


def recall_quality() -> str:
    data = load("recall_quality.json")
    bm25 = data["bm25"]
    lines = [
        "| ranking | weights lex : vec | recall@5 | MRR | recall@5 held out | query embedding |",
        "|---|---|---|---|---|---|",
        f"| BM25 alone | — | {bm25['recall_at_5']:.3f} | {bm25['mrr']:.3f} | — | — |",
    ]
    for run in data["embedders"]:
        hybrid, alone, weights = run["hybrid"], run["vector_alone"], run["hybrid"]["weights"]
        name = run["embedder"]
        lines.append(
            f"| {name} alone | — | {alone['recall_at_5']:.3f} | {alone['mrr']:.3f} | — "
            f"| {num(run['query_embed_us'])} µs |"
        )
        lines.append(
            f"| {name} hybrid | {weights['lexical']:g} : {weights['vector']:g} "
            f"| **{hybrid['all']['recall_at_5']:.3f}** | {hybrid['all']['mrr']:.3f} "
            f"| {hybrid['held_out_half']['recall_at_5']:.3f} | |"
        )
    runs = {run["embedder"]: run for run in data["embedders"]}
    default, targets = runs[data["default_embedder"]], data["targets"]
    hashing = runs.get("hashing-256")
    by_kind = ""
    if hashing is not None:
        kinds = ", ".join(
            f"{kind} {hashing['hybrid']['by_kind'][kind]['recall_at_5']:.2f} → "
            f"{default['hybrid']['by_kind'][kind]['recall_at_5']:.2f}"
            for kind in data["kinds"]
        )
        by_kind = f" By kind (hashing hybrid → {data['default_embedder']} hybrid): {kinds}."
    met = "met" if not data["targets_missed"] else f"missed: {'; '.join(map(str, data['targets_missed']))}"
    summary = (
        f"\nTargets ({met}): hybrid with the default `{data['default_embedder']}` reaches "
        f"**{default['hybrid']['all']['recall_at_5']:.3f}** recall@5 (≥ {targets['hybrid_recall_at_5']}) and "
        f"**{100 * data['gain_over_hashing']:+.1f} points** over hashing hybrid "
        f"(≥ +{100 * targets['gain_over_hashing']:.0f}).{by_kind}\n"
    )
    return "\n".join(lines) + "\n" + summary + "\n" + machine_line(data, "python -m bench recall_quality")


def _conditions(facts: Json) -> str:
    when = str(facts.get("measured_at", "?")).replace("T", " ").rstrip("Z")[:16]
    tracing = "tracing on" if facts.get("server_tracing") else "tracing off"
    return f"{when} UTC, load {facts.get('load_average_1m', '?')}, {tracing}"


def memory_recall_full() -> str:
    """The --full run: every backend at two tenant counts, with the conditions each backend was measured in."""
    data = load("memory_recall_full.json")
    small, large = (f"{users}x{data['settings']['episodes_per_user']}" for users in data["settings"]["users"])
    names = {"memory": "memory", "sqlite": "SQLite", "postgres": "Postgres", "redis": "Redis", "chroma": "Chroma"}
    k_small, k_large = (f"{num(u / 1000)}k" for u in data["settings"]["users"])
    lines = [
        f"| backend | direct warm p50 / p99, {k_small} → {k_large} users | direct concurrent Recall/s, {k_large} "
        f"| gRPC warm p50 / p99, {k_small} → {k_large} users | gRPC concurrent Recall/s, {k_large} "
        f"| p99 ratio {k_large}/{k_small} (direct, gRPC warm) | measured |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    ratios = data["verdicts"]["p99_ratio"]
    for backend, label in names.items():
        if backend not in data["results"]:
            continue
        cells = [label]
        for via in ("direct", "grpc"):
            runs = data["results"][backend].get(via, {})
            if large in runs:
                a, b = runs[small]["warm"], runs[large]["warm"]
                cells.append(f"{a['p50_ms']:.2f} / {a['p99_ms']:.2f} → {b['p50_ms']:.2f} / {b['p99_ms']:.2f} ms")
                cells.append(num(runs[large]["concurrent"]["per_second"]))
            else:
                a = runs[small]["warm"]
                cells.append(f"{a['p50_ms']:.2f} / {a['p99_ms']:.2f} ms ({k_small} only)")
                cells.append(f"{num(runs[small]['concurrent']['per_second'])} ({k_small})")
        measured = [ratios.get(f"{backend} {via} warm") for via in ("direct", "grpc")]
        both = all(isinstance(r, float) for r in measured)
        cells.append(", ".join(f"{r:.2f}" for r in measured) if both else "not measured")
        cells.append(_conditions(data["conditions_per_backend"].get(backend, {})))
        lines.append("| " + " | ".join(cells) + " |")
    sqlite = data["results"].get("sqlite", {}).get("grpc", {})
    per_cpu = ", ".join(
        f"{num(sqlite[size]['concurrent']['per_second'])}/s at {num(int(size.split('x')[0]))} users "
        f"({num(sqlite[size]['concurrent']['recalls_per_server_cpu_second'])} per second of server CPU)"
        for size in (large, small)
        if size in sqlite
    )
    targets = data["targets"]
    met = "met" if not data["missed"] else f"missed: {'; '.join(map(str, data['missed']))}"
    summary = (
        f"\nTargets ({met}): p99 at {k_large} users within {targets['p99_ratio_max']}× of p99 at {k_small}; "
        f"≥ {num(targets['sqlite_recalls_per_second_min'])} Recall/s per process on SQLite through gRPC: {per_cpu}.\n"
    )
    return "\n".join(lines) + "\n" + summary + "\n" + machine_line(data, "python -m bench memory_recall --full")


PYTHON_CLIENT = "python grpc.aio, one channel"


def _concurrent_runs(run: Json) -> list[Json]:
    """A gRPC run's concurrent figures, one per worker count (runs before --workers: one, Python client)."""
    by_workers: Json = run.get("concurrent_by_workers") or {"1": run["concurrent"]}
    return [by_workers[w] for w in sorted(by_workers, key=int)]


def _concurrent_cell(run: Json) -> str:
    """Recall/s per worker count, with server CPU per Recall where measured."""
    cells = []
    for entry in _concurrent_runs(run):
        workers = entry.get("workers", 1)
        cpu = entry.get("server_cpu_ms_per_recall")
        cost = f" ({num(1000 * cpu)} µs server CPU each)" if cpu else ""
        cells.append(f"{workers} process{'es' if workers > 1 else ''}: {num(entry['per_second'])}{cost}")
    return "; ".join(cells)


def _load_generator(run: Json) -> str:
    return str(run["concurrent"].get("load_generator", PYTHON_CLIENT))


def memory_recall_short() -> str:
    """The short default run (SQLite through gRPC), one row per results file: the current run (ghz, one and
    two server processes), the same with the Python client, and each embedder's earlier run."""
    files = (
        "memory_recall.json",
        "memory_recall_python_client.json",
        "memory_recall_sqlite_hashing.json",
        "memory_recall_sqlite_wordllama.json",
    )
    lines = [
        "| results file | embedder | p50 one at a time | load generator | Recall/s concurrent, by server processes "
        "| query embedding | missed | measured |",
        "|---|---|---:|---|---|---:|---|---|",
    ]
    for name in files:
        data = load(name)
        users = data["settings"]["users"][0]
        run = data["results"]["sqlite"]["grpc"][f"{users}x{data['settings']['episodes_per_user']}"]
        facts = data["machine"]
        lines.append(
            f"| `bench/results/{name}` | {data['settings']['embedder']} | {run['warm']['p50_ms']:.2f} ms "
            f"| {_load_generator(run)} | {_concurrent_cell(run)} | {data['query_embedding']['us_per_query']:.1f} µs "
            f"| {'; '.join(map(str, data['missed'])) or '—'} "
            f"| {_conditions({**facts, 'server_tracing': data['settings']['server_tracing']})}, "
            f"{facts['cpus']} CPUs, `{data['command']}` |"
        )
    return "\n".join(lines) + "\n"


def memory_recall_floors() -> str:
    """What this machine allows under a Recall: the same ghz load, side by side in the same rounds, on a
    health check (gRPC, no work of ours) and on a Recall of users who stored nothing."""
    data = load("memory_recall.json")
    users = data["settings"]["users"][0]
    run = data["results"]["sqlite"]["grpc"][f"{users}x{data['settings']['episodes_per_user']}"]
    floors = run.get("floor_by_workers", {})
    lines = [
        "| server processes | Recall of a user with 100 episodes | Recall of a user with nothing stored "
        "| health check (no work of ours) |",
        "|---:|---:|---:|---:|",
    ]

    def cell(per_second: float, cpu_ms: float, client_ms: float | None) -> str:
        client = f", ghz {num(1000 * client_ms)} µs" if client_ms is not None else ""
        return f"{num(per_second)}/s ({num(1000 * cpu_ms)} µs server CPU each{client})"

    for workers, floor in floors.items():
        recall = run["concurrent_by_workers"][workers]
        row = [cell(recall["per_second"], recall["server_cpu_ms_per_recall"], recall.get("client_cpu_ms_per_recall"))]
        row += [
            cell(f["per_second"], f["server_cpu_ms_per_call"], f["client_cpu_ms_per_call"])
            for f in (floor["empty"], floor["health"])
        ]
        lines.append(f"| {workers} | " + " | ".join(row) + " |")
    return table_with_facts(lines, data, str(data["command"]))


def memory_recall_same_code() -> str:
    """The code that met the target on 2026-11-24, re-run later with its own bench on the same VM type:
    how much of a figure is the day's machine."""
    then, again = load("memory_recall_full.json"), load("memory_recall_same_code_rerun.json")
    lines = [
        "| run | SQLite direct p50, one at a time | SQLite direct Recall/s | SQLite through gRPC, Recall/s "
        "| recalls per second of server CPU | command |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for data in (then, again):
        size = f"{data['settings']['users'][0]}x{data['settings']['episodes_per_user']}"
        sqlite = data["results"]["sqlite"]
        warm, grpc = sqlite["direct"][size]["warm"], sqlite["grpc"][size]["concurrent"]
        when = str(data["machine"]["measured_at"]).replace("T", " ").rstrip("Z")[:16]
        lines.append(
            f"| {when} UTC, {data['machine']['cpus']} CPUs, load {data['machine']['load_average_1m']} "
            f"| {warm['p50_ms']:.3f} ms "
            f"| {num(warm['per_second'])} | {num(grpc['per_second'])} | {num(grpc['recalls_per_server_cpu_second'])} "
            f"| `{data['command']}` |"
        )
    code = again.get("code", {})
    return "\n".join(lines) + f"\n\nBoth runs: commit `{code.get('commit', '?')}`, {code.get('note', '')}\n"


def memory_recall_steps() -> str:
    data = load("memory_recall_steps.json")
    labels = {
        "query_embedding": f"query embedding ({data['embedder']})",
        "prepare_query (embedding + BM25 terms)": "preparing the query (embedding + BM25 terms)",
        "kernel_validate (protovalidate + JSON depth)": (
            "kernel validation alone (protovalidate incl. the no-NUL rule, JSON depth walk)"
        ),
        "store_recall (prepare + rank + SQLite reads)": (
            "`SQLiteStore.recall` (prepare, rank, the two SQLite point reads)"
        ),
        "servicer_recall (+ the answer, metrics)": "`MemoryServicer.Recall` (+ the answer, metrics)",
        "kernel_pipeline (+ decode, admit, record, encode)": (
            "the whole kernel pipeline (+ decode, admit, record, encode)"
        ),
    }
    steps = data["us_per_recall"]
    lines = [
        "| step (each includes the ones above it; validation is part of the pipeline only) | µs per Recall |",
        "|---|---:|",
    ]
    lines += [f"| {labels.get(key, key)} | {num(steps[key], 1)} |" for key in labels if key in steps]
    lines += [f"| {key} | {num(value, 1)} |" for key, value in steps.items() if key not in labels]
    return "\n".join(lines) + "\n\n" + machine_line(data, "python -m bench memory_recall --steps")


def _codes(counts: Json) -> str:
    return ", ".join(f"{num(n)} {'OK' if code == 'OK' else f'`{code}`'}" for code, n in sorted(counts.items()))


def faults() -> str:
    """One row per fault injected under load, then what the load and the data came through as."""
    data = load("faults.json")
    lines = [
        "| fault (held, then cleared) | held | calls during the fault | slowest failed call | hung calls "
        "| OK again after it cleared |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for phase in data["phases"]:
        during = phase["during_fault"]
        recovered = phase["recovered_after_s"]
        lines.append(
            f"| {phase['fault']} | {phase['held_s']:.1f} s | {_codes(during['codes'])} "
            f"| {during['max_failed_call_s']:.2f} s | {during['hung_calls'] + phase['after_clear']['hung_calls']} "
            f"| {'never' if recovered is None else f'{recovered:.2f} s'} |"
        )
    totals, kept = data["totals"], data["data"]
    audit = "verify" if kept["audit_verifies"] else f"do **not** verify ({', '.join(map(str, kept['bad_chains']))})"
    summary = (
        f"\nLoad held: {data['users']} tenants, {data['concurrency']} runs in flight through the Agent "
        f"(call deadline {data['call_timeout_ms'] / 1000:g} s, run deadline {data['run_timeout_ms'] / 1000:g} s), "
        f"{data['topology']}: {num(totals['calls'])} runs, {_codes(totals['codes'])}; slowest call "
        f"{totals['max_call_s']:.2f} s, {totals['hung_calls']} hung. Data lost of "
        f"{num(kept['acknowledged_runs'])} acknowledged runs: **{kept['lost_memory_writes']}** episodes, "
        f"**{kept['lost_audit_writes']}** audit entries (all {kept['chains_verified']} chains and the signed "
        f"checkpoint {audit}, {num(kept['entries_verified'])} entries); budget holds left "
        f"{kept['waited_for_ttl_s']:.0f} s after their TTL: **{kept['reservations_outstanding_after_ttl']}**; "
        f"acknowledged charges missing: **{kept['acknowledged_charges_missing']}**. Checks "
        f"{'passed' if data['passed'] else 'failed: ' + '; '.join(map(str, data['failures']))}.\n"
    )
    return machine_line(data, "python -m bench faults") + "\n" + "\n".join(lines) + "\n" + summary


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
    return machine_line(data, "python -m bench noisy_neighbour") + "\n" + "\n".join(lines) + "\n" + verdict


def transport() -> str:
    """Unary calls against the multiplexed streams, side by side in one run; then the Agent over each."""
    data = load("transport.json")
    med, ratio = data["medians"], data["mux_vs_unary"]
    lines = [
        "| lane | calls/s | client CPU per call | server CPU per call |",
        "|---|---:|---:|---:|",
        f"| unary gRPC, `{data['rpc']}`, {data['concurrency']} in flight | {num(med['unary']['calls_per_second'])} "
        f"| {num(med['unary']['client_cpu_us_per_call'])} µs | {num(med['unary']['server_cpu_us_per_call'])} µs |",
        f"| multiplexed ({data['mux_settings']['streams']} streams, ≤ {data['mux_settings']['batch']} per write) "
        f"| {num(med['mux']['calls_per_second'])} (×{ratio['calls_per_second']:.2f}) "
        f"| {num(med['mux']['client_cpu_us_per_call'])} µs (×{ratio['client_cpu_us_per_call']:.2f}) "
        f"| {num(med['mux']['server_cpu_us_per_call'])} µs (×{ratio['server_cpu_us_per_call']:.2f}) |",
    ]
    agent = data.get("agent_per_service")
    if agent:
        lines += [
            "",
            f"| the Agent, per-service topology ({agent['users']} users × {agent['turns']} turns) | turns/s | p50 "
            "| CPU per turn, all processes | errors |",
            "|---|---:|---:|---:|---:|",
        ]
        for lane, label in (("unary", "unary calls (`grpc`)"), ("mux", "multiplexed (the default)")):
            row = agent["lanes"][lane]
            lines.append(
                f"| {label} | {num(row['turns_per_second'], 1)} | {num(row['p50_ms'], 1)} ms "
                f"| {num(row['cpu_ms_per_turn'], 1)} ms | {num(row['errors'])} |"
            )
        lines.append(
            f"\nMultiplexed over unary: ×{agent['mux_vs_unary']['turns_per_second']:.2f} turns/s, "
            f"×{agent['mux_vs_unary']['p50_ms']:.2f} p50, ×{agent['mux_vs_unary']['cpu_ms_per_turn']:.2f} CPU per turn."
        )
    return table_with_facts(lines, data, "python -m bench transport")


def sqlite_writes() -> str:
    """Group commit: Remember through Memory's SQLite store, a commit per write against one per batch."""
    data = load("sqlite_writes.json")
    lanes = data["lanes"]
    lines = ["| writes one transaction holds | in flight | writes/s | CPU per write |", "|---:|---:|---:|---:|"]
    for name, row in lanes.items():
        batch, in_flight = name.removeprefix("batch ").split(", ")
        lines.append(
            f"| {batch} | {in_flight.removesuffix(' in flight')} | {num(row['writes_per_second'])} "
            f"| {num(row['cpu_us_per_write'])} µs |"
        )
    return table_with_facts(lines, data, "python -m bench sqlite_writes")


TABLES: dict[str, Callable[[], str]] = {
    "race": race,
    "race-targets": race_targets,
    "multi-tenant": multi_tenant,
    "ghz": ghz,
    "per-service": per_service,
    "tracing-overhead": tracing_overhead,
    "budget-throughput": budget_throughput,
    "budget-rss": budget_rss,
    "policy-decision": policy_decision,
    "policy-grpc": policy_grpc,
    "audit-appends": audit_appends,
    "audit-verify": audit_verify,
    "agent-turn": agent_turn,
    "noisy-neighbour": noisy_neighbour,
    "faults": faults,
    "recall-quality": recall_quality,
    "memory-recall-full": memory_recall_full,
    "memory-recall-short": memory_recall_short,
    "memory-recall-steps": memory_recall_steps,
    "memory-recall-floors": memory_recall_floors,
    "memory-recall-same-code": memory_recall_same_code,
    "transport": transport,
    "sqlite-writes": sqlite_writes,
}
README_TABLES = ("race", "multi-tenant", "ghz", "per-service")
"""The tables README.md must carry; docs/*.md pages carry whichever they quote."""

MARKED = re.compile(r"<!-- bench:(?P<name>[\w-]+):start -->\n.*?<!-- bench:(?P=name):end -->", flags=re.S)


def render_into(text: str, required: tuple[str, ...] = README_TABLES, links_from_docs: bool = False) -> str:
    """The document's text with every bench table replaced by what the results files say.

    ``links_from_docs``: the document sits in docs/, so the tables' links to docs/x.md become x.md."""
    missing = [name for name in required if f"<!-- bench:{name}:start -->" not in text]
    if missing:
        raise SystemExit(f"the document lacks the bench markers of {', '.join(missing)}")

    def rendered(found: re.Match[str]) -> str:
        name = found.group("name")
        if name not in TABLES:
            raise SystemExit(f"no renderer for the bench:{name} table (scripts/bench_tables.py TABLES)")
        table = TABLES[name]()
        table = table.replace("](docs/", "](") if links_from_docs else table
        return f"<!-- bench:{name}:start -->\n{table}<!-- bench:{name}:end -->"

    return MARKED.sub(rendered, text)


def documents() -> dict[Path, str]:
    """Every document with bench tables, and its text as the results files render it."""
    out = {README: render_into(README.read_text())}
    for doc in DOCS:
        text = doc.read_text()
        out[doc] = render_into(text, required=(), links_from_docs=True)
    return out


def main(argv: list[str]) -> int:
    if "--write" in argv:
        for path, text in documents().items():
            if path.read_text() != text:
                path.write_text(text)
                print(f"rewrote the benchmark tables in {path.relative_to(ROOT)}")
        return 0
    for name, render in TABLES.items():
        sys.stdout.write(f"<!-- bench:{name} -->\n{render()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
