"""Benchmarks. Speed is proven here, never by timed unit tests."""
