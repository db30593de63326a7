"""Retries of transient model errors with exponential backoff, within the run's deadline."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from loomflow.agent.models.base import ModelError

T = TypeVar("T")
log = logging.getLogger("loomflow.agent")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    """Calls at most, the first included."""
    base_delay_s: float = 0.2
    max_delay_s: float = 8.0

    def delay(self, attempt: int, error: ModelError) -> float:
        """Full-jitter exponential backoff; a provider's Retry-After wins when it says longer."""
        backoff: float = min(self.max_delay_s, self.base_delay_s * float(2**attempt)) * (0.5 + random.random() / 2)
        if error.retry_after_s is not None:
            return float(min(self.max_delay_s, max(backoff, error.retry_after_s)))
        return backoff


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    deadline: float,
    can_retry: Callable[[], bool] = lambda: True,
) -> T:
    """Runs ``call`` until it succeeds, fails permanently, runs out of attempts or of time.

    ``can_retry`` lets a streaming caller refuse a retry once text reached the
    client (a retry would repeat it).
    """
    attempt = 0
    while True:
        try:
            return await call()
        except ModelError as error:
            attempt += 1
            if not error.transient or attempt >= policy.attempts or not can_retry():
                raise
            delay = policy.delay(attempt - 1, error)
            if time.monotonic() + delay >= deadline:
                raise
            log.warning("model call failed (%s); retry %d in %.2fs", error, attempt, delay)
            await asyncio.sleep(delay)
