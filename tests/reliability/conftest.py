"""Shared pieces of the reliability suite: the RPC catalogue and a `loomflow serve` process to attack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loomflow.testing.processes import ServeProcess

INSECURE_ENV = {"LOOMFLOW_INSECURE": "true", "LOOMFLOW_TRACING": "false", "LOOMFLOW_LOG_LEVEL": "error"}


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """All five services in one real `loomflow serve` process (insecure: every caller is an operator,
    so every RPC, operator-only ones included, is reachable), on embedded backends."""
    folder: Path = tmp_path_factory.mktemp("served")
    # Shared by the fuzz and wire-limit modules: one process start instead of two.
    process = ServeProcess("memory,budget,policy,audit,agent", folder, env=INSECURE_ENV).start()
    try:
        yield process
    finally:
        process.stop()
