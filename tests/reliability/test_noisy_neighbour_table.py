"""The noisy-neighbour figures in docs/reliability.md are rendered from the bench's results file.

Nobody types them: re-run ``python bench/noisy_neighbour.py``, then ``python scripts/bench_tables.py --write``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def bench_tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_tables", REPO / "scripts" / "bench_tables.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_noisy_neighbour_table_in_the_reliability_page_matches_the_results_file() -> None:
    module = bench_tables()
    for page, tables in module.DOC_TABLES.items():
        text = page.read_text()
        assert module.render_into(text, tables, page.name) == text, (
            f"a benchmark table in {page.name} differs from bench/results/*.json: "
            "run python scripts/bench_tables.py --write"
        )
