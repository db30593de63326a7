"""Reliability and security: fuzzing, authentication and tenant attacks, rate limits, fault smoke tests."""
