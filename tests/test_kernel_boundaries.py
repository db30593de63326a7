"""The kernel is what every service stands on, so it names none of them: what is specific to a service
lives in that service's package, in ``loomflow.suite`` (which services there are) or in ``loomflow.cli``.
A kernel that knew the list of services, or one service's settings, would have to change with each of them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from loomflow import suite

KERNEL = Path(suite.__file__).resolve().parent / "kernel"

# Occurrences that contain a service's name but do not mean the service, each with why it is generic.
GENERIC = {
    "InMemorySpanExporter": "OpenTelemetry's class: spans kept in RAM, not the Memory service",
    "in_memory_span_exporter": "the module of OpenTelemetry's InMemorySpanExporter",
    "kept in memory": "plain English for RAM (the test hook that keeps spans)",
    '":memory:"': "SQLite's name for a database in RAM",
}


def _mentions(text: str) -> list[str]:
    names = "|".join(re.escape(name) for name in suite.SERVICE_NAMES)
    for phrase in GENERIC:
        text = text.replace(phrase, "")
    return re.findall(names, text, re.IGNORECASE)


def test_the_kernel_names_no_service_in_code_comments_or_help() -> None:
    found = [
        f"{path.relative_to(KERNEL.parent)}:{number}: {line.strip()}"
        for path in sorted(KERNEL.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _mentions(line)
    ]
    assert not found, "the kernel names a service (move that knowledge to the service or the suite):\n" + "\n".join(
        found
    )


def test_the_kernel_imports_no_service_nor_the_suite() -> None:
    outside = {f"loomflow.{name}" for name in (*suite.SERVICE_NAMES, "suite", "cli")}
    found = []
    for path in sorted(KERNEL.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            found += [
                f"{path.name} imports {m}" for m in modules if any(m == o or m.startswith(f"{o}.") for o in outside)
            ]
    assert not found, "the kernel depends on a service: " + ", ".join(found)


def test_the_allow_list_is_still_needed() -> None:
    text = "\n".join(path.read_text() for path in KERNEL.rglob("*.py"))
    stale = [phrase for phrase in GENERIC if phrase not in text]
    assert not stale, f"allow-listed phrases the kernel no longer contains (drop them): {stale}"
