"""`loomflow serve` start-up errors are one clear line naming the setting to change, exit 2, no traceback.

Each case runs the installed console script (`.venv/bin/loomflow`, what bootstrap installs) as a real
subprocess, as a reader would type it.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from loomflow.testing.processes import free_port, loomflow_script

SECRET = "d2f1c0b9a8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1"


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another program is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def serve(tmp_path: Path, *flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOOMFLOW_")}
    return subprocess.run(
        [str(loomflow_script()), "serve", "--data-dir", str(tmp_path / "data"), "--log-level", "error", *flags],
        env={**clean, **(env or {})},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_clear_line(done: subprocess.CompletedProcess[str], *names: str) -> str:
    assert done.returncode == 2, f"exit {done.returncode}:\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("loomflow: ")]
    assert len(errors) == 1, f"expected one error line:\n{done.stderr}"
    for name in names:
        assert name in errors[0], f"{name!r} missing from {errors[0]!r}"
    return errors[0]


def test_a_taken_grpc_port_names_the_port_setting(tmp_path: Path, taken_port: int) -> None:
    done = serve(tmp_path, "--insecure", "--port", str(taken_port), "--metrics-port", "0")
    assert_one_clear_line(done, f"127.0.0.1:{taken_port}", "--port", "LOOMFLOW_PORT")


def test_a_taken_metrics_port_names_the_metrics_setting(tmp_path: Path, taken_port: int) -> None:
    done = serve(tmp_path, "--insecure", "--port", "0", "--metrics-port", str(taken_port))
    assert_one_clear_line(done, str(taken_port), "--metrics-port", "LOOMFLOW_METRICS_PORT")


def test_an_unreachable_database_names_the_dsn_setting(tmp_path: Path) -> None:
    dead = f"postgres://loomflow@127.0.0.1:{free_port()}/loomflow"
    done = serve(
        tmp_path, "--insecure", "--port", "0", "--metrics-port", "0", "--services", "memory", "--memory-dsn", dead
    )
    assert_one_clear_line(done, "memory", "LOOMFLOW_MEMORY_DSN", "--memory-dsn")


def test_an_unsupported_dsn_names_the_dsn_setting(tmp_path: Path) -> None:
    done = serve(
        tmp_path,
        "--insecure",
        "--port",
        "0",
        "--metrics-port",
        "0",
        "--services",
        "budget",
        "--budget-dsn",
        "mysql://x",
    )
    assert_one_clear_line(done, "LOOMFLOW_BUDGET_DSN")


def test_a_missing_token_key_names_the_key_settings(tmp_path: Path) -> None:
    done = serve(tmp_path, "--port", "0", "--metrics-port", "0", "--services", "memory")
    assert_one_clear_line(done, "LOOMFLOW_AUTH_JWT_SECRET", "--insecure")


def test_a_missing_audit_key_names_the_audit_settings(tmp_path: Path) -> None:
    done = serve(
        tmp_path, "--port", "0", "--metrics-port", "0", "--services", "audit", env={"LOOMFLOW_AUTH_JWT_SECRET": SECRET}
    )
    assert_one_clear_line(done, "LOOMFLOW_AUDIT_HMAC_KEY")


@pytest.mark.parametrize(
    ("services", "flags", "setting"),
    [
        ("budget", ("--budget-dsn", "memory://"), "--budget-dsn"),
        ("budget", (), "--budget-dsn"),  # the default ledger is in-process
        ("audit", (), "--audit-dsn"),  # the default file sink has one writer
        ("audit", ("--audit-dsn", "file:///tmp/loomflow-audit"), "--audit-dsn"),
        ("memory", ("--memory-dsn", "memory://"), "--memory-dsn"),
        ("memory", ("--memory-dsn", "chroma://"), "--memory-dsn"),
        ("memory,budget", ("--budget-dsn", "memory://"), "--budget-dsn"),
    ],
)
def test_workers_are_refused_when_a_service_keeps_its_state_in_the_process(
    tmp_path: Path, services: str, flags: tuple[str, ...], setting: str
) -> None:
    """Several processes would each hold a diverging copy of that state (tests/test_workers.py runs two)."""
    done = serve(
        tmp_path, "--insecure", "--port", "0", "--metrics-port", "0", "--workers", "2", "--services", services, *flags
    )
    assert_one_clear_line(done, "--workers", setting, "LOOMFLOW_WORKERS")


def test_serve_help_lists_every_flag_even_with_a_percent_sign_in_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse %-formats help texts: one stray % (\"±20 % jitter\") once made `loomflow serve --help` crash."""
    from loomflow import cli

    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "±20 % jitter" in shown
    assert "LOOMFLOW_RETENTION_SWEEP_SECONDS" in shown
