"""The README tells the truth: its configuration table is the code's, its recipes and snippets
are the tested ones, and every file it points to exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from tests.support.doc_blocks import parse

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def between(text: str, marker: str) -> str:
    start, end = f"<!-- {marker}:start -->\n", f"<!-- {marker}:end -->"
    assert start in text, f"README lacks the {marker} markers"
    return text.split(start, 1)[1].split(end, 1)[0]


def fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def script(name: str) -> Any:
    """A module of scripts/ (they are run as files, not imported as a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_table_matches_the_code() -> None:
    module = script("config_table")
    assert between(README, "config-table") == module.table(), "README's table is stale: paste scripts/config_table.py"


def test_benchmark_tables_are_rendered_from_the_results_files() -> None:
    """README.md and every docs/*.md page: each marked table is what bench/results/*.json renders."""
    module = script("bench_tables")
    stale = [str(path.relative_to(REPO)) for path, text in module.documents().items() if path.read_text() != text]
    assert not stale, (
        f"benchmark tables differ from bench/results/*.json in {stale}: run python scripts/bench_tables.py --write"
    )
    assert module.render_into(README) == README
    in_docs = {name for path in module.DOCS for name in module.MARKED.findall(path.read_text())}
    assert in_docs >= set(module.TABLES) - {"per-service"}, "a renderer no docs page uses"


def test_every_benchmark_table_names_when_and_on_what_machine_it_was_measured() -> None:
    module = script("bench_tables")
    for name, render in module.TABLES.items():
        table = render()
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", table), f"bench:{name} does not say when it was measured"
        assert re.search(r"\d+ CPUs", table), f"bench:{name} does not say how many CPUs the run had"
        assert re.search(r"load (average )?[\d.]+", table), f"bench:{name} does not say the machine's load"


def test_grpcurl_recipes_are_the_ones_ci_runs() -> None:
    tested = (REPO / "docs" / "operations-grpcurl.md").read_text()
    section = README.split("## Operations (grpcurl)", 1)[1].split("### Load testing with ghz", 1)[0]
    lines = [line for block in fenced_blocks(section, "bash") for line in block.splitlines() if line.strip()]
    assert lines, "no recipes found in the README's operations section"
    first_line = "bash scripts/install-tools.sh"  # the one README-only convenience line
    missing = [line for line in lines if line not in tested and not line.startswith(first_line)]
    assert not missing, f"README recipes not in docs/operations-grpcurl.md (so not run in CI): {missing}"


def test_client_snippets_are_complete_programs_that_run() -> None:
    """The Python and Go snippets are marked runnable: tests/test_docs_run.py runs them against `make serve`."""
    runnable = {b.language: b.text for b in parse("README.md", README)}
    assert "loomflow.client" in runnable.get("python", ""), "README's Python snippet is not marked <!-- run -->"
    assert "asyncio.run(main())" in runnable["python"], "README's Python snippet is not a complete program"
    assert "package main" in runnable.get("go", ""), "README's Go snippet is not a complete, runnable program"


def test_every_linked_file_exists() -> None:
    for target in re.findall(r"\]\(((?:docs|bench|k8s|clients)/[^)#\s]+)", README):
        assert (REPO / target).exists(), f"README links to {target}, which does not exist"


def test_the_two_opening_commands_are_the_ones_ci_runs_on_a_fresh_clone() -> None:
    """README opens with `make demo` and `make test`. They are not re-run inside the test suite (make test
    would run the suite within itself): .ci/run runs both, as written, on a fresh clone of main."""
    opening = fenced_blocks(README, "bash")[0]
    commands = [line.split("#", 1)[0].strip() for line in opening.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"], f"README's first block changed: {commands}"
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in [line.strip() for line in ci], f".ci/run does not run `{command}` as written"
