"""The RunContext a tool sees: who it runs for, in which session and run.

The runner binds one :class:`RunContext` per run in a context variable, so a tool
calls :func:`get_run_context` instead of receiving tenant ids through its
arguments (which the model writes, and could get wrong or forge).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loomflow.kernel.tenancy import ANONYMOUS_SENTINEL

if TYPE_CHECKING:
    from loomflow.agent.dependencies import Dependencies
    from loomflow.v1 import tenancy_pb2


@dataclass(frozen=True)
class RunContext:
    """One run of the agent, as tools see it.

    ``user_id`` is None for the anonymous partition (as in the seed); ``tenant``
    is the partition key, never None, and is what per-tenant keys must use.
    """

    tenant: str
    session_id: str
    run_id: str
    scope: tenancy_pb2.UserScope
    deadline: float
    """``time.monotonic()`` value by which the run must end."""
    dependencies: Dependencies | None = None
    """Stubs to the four services, called with the Agent's service credential."""

    @property
    def user_id(self) -> str | None:
        return None if self.tenant == ANONYMOUS_SENTINEL else self.tenant

    @property
    def anonymous(self) -> bool:
        return self.tenant == ANONYMOUS_SENTINEL

    def remaining(self) -> float:
        """Seconds left before the run's deadline (never negative)."""
        return max(0.0, self.deadline - time.monotonic())


_current: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar("loomflow_run_context", default=None)


def get_run_context() -> RunContext:
    """The context of the run calling this tool; raises outside a run."""
    context = _current.get()
    if context is None:
        raise LookupError("get_run_context() called outside an agent run")
    return context


@contextmanager
def bound_run_context(context: RunContext) -> Iterator[RunContext]:
    """Makes ``context`` what :func:`get_run_context` returns inside the block."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
