"""Moved to loomflow.testing.suite; this name stays so tests on branches not merged yet still import."""

from loomflow.testing.suite import TEST_JWT_SECRET, RunningSuite, running_suite

__all__ = ["TEST_JWT_SECRET", "RunningSuite", "running_suite"]
