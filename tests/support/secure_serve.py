"""Moved to loomflow.testing.secure; this name stays so tests on branches not merged yet still import."""

from loomflow.testing.secure import SecureSuite, secure_suite

__all__ = ["SecureSuite", "secure_suite"]
