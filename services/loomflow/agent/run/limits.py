"""The server defaults a run's options may override, and the deadlines a run works within."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from loomflow.agent.models.retry import RetryPolicy
from loomflow.agent.seeding import SeedLimits


@dataclass(frozen=True)
class RunLimits:
    """Server defaults a run's options may override (0 in the options means these)."""

    max_turns: int = 8
    timeout_s: float = 60.0
    recall_limit: int = 5
    context_tokens: int = 512
    recall_min_similarity: float = -1.0
    """Below 0: the threshold tuned for the embedder Memory reports (RecallResponse.min_vector_similarity)."""
    max_output_tokens: int = 1024
    finish_grace_s: float = 1.0
    system_prompt: str = "You are a helpful assistant."
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    seed: SeedLimits = field(default_factory=SeedLimits)


@dataclass(frozen=True)
class Deadlines:
    """``time.monotonic()`` values: when the run started, when work stops, when its records must be written."""

    started: float
    work: float
    """Work (model, tools, approvals) stops here: the run's own timeout."""
    hard: float
    """The run's records are written in the grace period between ``work`` and this."""

    @classmethod
    def start(cls, timeout: float, time_remaining: float | None, finish_grace_s: float) -> Deadlines:
        started = time.monotonic()
        work = started + timeout
        hard = work + finish_grace_s
        if time_remaining is not None and time_remaining < timeout + finish_grace_s:
            # The caller's deadline comes first: keep part of it (half, when short) for the writes,
            # so the caller still gets an answer.
            hard = started + time_remaining
            grace = min(finish_grace_s, time_remaining * 0.5)
            work = min(work, hard - grace)
        return cls(started, work, hard)
