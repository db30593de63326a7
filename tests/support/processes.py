"""Moved to loomflow.testing.processes (and the repository root to tests.support.repo); this name stays
so tests written against it, on branches not merged yet, still import. New code imports loomflow.testing."""

from loomflow.testing.processes import ServeProcess, free_port, loomflow_script, source_env
from tests.support.repo import REPO

__all__ = ["REPO", "ServeProcess", "free_port", "loomflow_script", "source_env"]
