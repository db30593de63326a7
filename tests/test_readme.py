"""The README tells the truth: its configuration table is the code's, its recipes and snippets
are the tested ones, and every file it points to exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def between(text: str, marker: str) -> str:
    start, end = f"<!-- {marker}:start -->\n", f"<!-- {marker}:end -->"
    assert start in text, f"README lacks the {marker} markers"
    return text.split(start, 1)[1].split(end, 1)[0]


def fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_configuration_table_matches_the_code() -> None:
    spec = importlib.util.spec_from_file_location("config_table", REPO / "scripts" / "config_table.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert between(README, "config-table") == module.table(), "README's table is stale: paste scripts/config_table.py"


def test_benchmark_tables_are_rendered_from_the_results_files() -> None:
    spec = importlib.util.spec_from_file_location("bench_tables", REPO / "scripts" / "bench_tables.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render_into(README) == README, (
        "a README benchmark table differs from bench/results/*.json: run python scripts/bench_tables.py --write"
    )


def test_grpcurl_recipes_are_the_ones_ci_runs() -> None:
    tested = (REPO / "docs" / "operations-grpcurl.md").read_text()
    section = README.split("## Operations (grpcurl)", 1)[1].split("### Load testing with ghz", 1)[0]
    lines = [line for block in fenced_blocks(section, "bash") for line in block.splitlines() if line.strip()]
    assert lines, "no recipes found in the README's operations section"
    first_line = "bash scripts/install-tools.sh"  # the one README-only convenience line
    missing = [line for line in lines if line not in tested and not line.startswith(first_line)]
    assert not missing, f"README recipes not in docs/operations-grpcurl.md (so not run in CI): {missing}"


def test_client_snippets_are_the_tested_ones() -> None:
    python_block = next(b for b in fenced_blocks(README, "python") if "loomflow.client" in b)
    assert python_block in (REPO / "docs" / "agent.md").read_text(), "README's Python snippet is not docs/agent.md's"
    go_doc = (REPO / "docs" / "go-client.md").read_text()
    for line in fenced_blocks(README, "go")[0].splitlines():
        assert line.strip() in go_doc, f"README's Go line is not in the tested program: {line!r}"


def test_every_linked_file_exists() -> None:
    for target in re.findall(r"\]\(((?:docs|bench|k8s|clients)/[^)#\s]+)", README):
        assert (REPO / target).exists(), f"README links to {target}, which does not exist"
