"""A clock tests move by hand: the budget ledger and the policy approvals take it injected."""

from __future__ import annotations


class FakeClock:
    """Milliseconds that only move when a test says so."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms
