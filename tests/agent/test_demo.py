"""`loomflow demo` (what `make demo` runs) works from a fresh process, every claim it prints holds, it
explains its numbers, and with --data-dir it keeps its state and prints an offline verify command that works."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from loomflow.testing.processes import loomflow_script
from tests.support.repo import REPO


def demo(*flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOMFLOW_")}  # embedded defaults only
    return subprocess.run(
        [str(loomflow_script()), "demo", *flags], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_the_demo_runs_end_to_end_and_exits_zero() -> None:
    done = demo()
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for section in ("1. Memory", "2. A destructive tool", "3. A budget stop", "4. The audit log verifies"):
        assert section in out
    assert "[FAILED]" not in out
    assert out.count("[ok]") == 10
    assert "5. Conversations continue, and a tool the caller runs" in out
    assert "[lookup_order] order A-1 of bob: shipped" in out
    assert "[recalled] My favourite colour is teal." in out
    assert "policy check: notes_clear -> ask" in out, "the ask step of the approval is shown"
    assert "interrupted: budget:" in out
    assert "(output_tokens, no window)" in out, "limits are named readably"
    assert "BudgetExceeded" in out
    assert "demo ok" in out


def test_the_demo_explains_its_budget_numbers() -> None:
    out = demo().stdout
    limit = re.search(r"he has used (\d+) in part 1; each model turn first reserves (\d+)", out)
    assert limit is not None, out
    used, reserve = int(limit[1]), int(limit[2])
    why = re.search(r"bob's ledger (\d+) -> (\d+);", out)
    assert why is not None, out
    assert int(why[1]) == used
    committed = int(why[2])
    assert f"{committed} + {reserve} = {committed + reserve} > {used + reserve}" in out
    assert f"committed {committed} + reserved 0 + estimate {reserve}" in out


def test_the_kept_demo_state_verifies_offline_with_the_printed_command(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    for run in (1, 2):  # a second run on the kept folder reuses its keys and extends the same log
        done = demo("--data-dir", str(folder))
        assert done.returncode == 0, f"run {run}:\n{done.stdout}{done.stderr}"
    lines = done.stdout.splitlines()
    command = lines[lines.index(f"state and keys kept in {folder}; verify its audit log offline with:") + 1].strip()
    assert "--public-key" in command
    verified = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "signature valid under the trusted public key" in verified.stdout
    assert "result: OK" in verified.stdout
