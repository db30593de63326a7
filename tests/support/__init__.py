"""Helpers shared by the test suites: running servers, real backends, status details."""
