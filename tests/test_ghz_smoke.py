"""A short ghz run in CI: every hot RPC under load, against a live secure suite, within
bench/ghz/thresholds.json (the full run is `python -m bench ghz`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_ghz_quick_run_meets_the_thresholds(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "ghz", "--quick", "--results-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["calls"]) == {"append", "check", "commit", "recall", "remember", "reserve", "run"}
    for name, call in summary["calls"].items():
        assert call["count"] == 400, f"{name}: ghz sent {call['count']} of 400 requests"
        assert call["error_rate"] == 0.0, f"{name}: {call}"
    assert done.returncode == 0, f"thresholds missed: {summary['failures']}\n{done.stderr[-3000:]}"
