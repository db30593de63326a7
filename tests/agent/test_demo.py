"""`loomflow demo` (what `make demo` runs) works from a fresh process and every claim it prints holds."""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import REPO, source_env


def test_the_demo_runs_end_to_end_and_exits_zero() -> None:
    env = {k: v for k, v in source_env().items() if not k.startswith("LOOMFLOW_")}  # embedded defaults only
    done = subprocess.run(
        [sys.executable, "-m", "loomflow.cli", "demo"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for section in ("1. Memory", "2. A destructive tool", "3. A budget stop", "4. The audit log verifies"):
        assert section in out
    assert "[FAILED]" not in out
    assert out.count("[ok]") == 10
    assert "5. Conversations continue, and a tool the caller runs" in out
    assert "[lookup_order] order A-1 of bob: shipped" in out
    assert "[recalled] My favourite colour is teal." in out
    assert "interrupted: budget:" in out
    assert "BudgetExceeded" in out
    assert "demo ok" in out
