"""Forget and its tombstones: the rule every backend applies.

A Forget of scope S (the whole tenant or one session) at instant F with optional
``before`` B deletes every record of S stamped before the *cutoff*
``C = min(B, F)`` (episodes by ``created_at``, blocks by ``updated_at``, fact
versions by ``recorded_at``) and records the tombstone (S, C).

Every write is stamped with the instant its request started. A write into S
stamped before C is refused with ABORTED and stores nothing: it started before
the Forget (or before its ``before``), so storing it would resurrect what the
Forget deleted. Backends check the tombstone and apply the write atomically
with respect to Forget, so the invariant "no record of S is stamped before C"
holds at every moment after the Forget, whatever the interleaving. A client
that retries gets a fresh stamp, after the Forget, and is stored.

Tombstones of one scope only ever need the largest cutoff, so a tenant keeps at
most one per session plus one for the whole tenant.
"""

from __future__ import annotations

from dataclasses import dataclass

from loomflow.kernel.errors import Aborted
from loomflow.memory.models import ForgetScope, Micros

WHOLE_TENANT = "*"
"""Tombstone scope key of a Forget without a session."""


def scope_key(session_id: str | None) -> str:
    """Tombstone scope key: ``*`` for the whole tenant, ``s:<session>`` for one session (injective)."""
    return WHOLE_TENANT if session_id is None else "s:" + session_id


def write_scope_keys(session_id: str) -> tuple[str, str]:
    """The tombstone keys that can cover a write into ``session_id``."""
    return WHOLE_TENANT, scope_key(session_id)


@dataclass(frozen=True, slots=True)
class Tombstone:
    scope_key: str
    cutoff: Micros


def tombstone_for(scope: ForgetScope, at: Micros) -> Tombstone:
    cutoff = at if scope.before is None else min(scope.before, at)
    return Tombstone(scope_key(scope.session_id), cutoff)


def covered(scope: ForgetScope, cutoff: Micros, session_id: str, stamped_at: Micros) -> bool:
    """Whether a record of ``session_id`` stamped at ``stamped_at`` falls under a Forget."""
    in_scope = scope.session_id is None or scope.session_id == session_id
    return in_scope and stamped_at < cutoff


def refuse_if_forgotten(cutoffs: list[Micros | None] | tuple[Micros | None, ...], stamped_at: Micros) -> None:
    """Raises ABORTED when a tombstone covering the write's scope has a later cutoff."""
    for cutoff in cutoffs:
        if cutoff is not None and stamped_at < cutoff:
            raise overtaken_by_forget()


def overtaken_by_forget() -> Aborted:
    return Aborted(
        "a Forget of this scope happened after this request started; the write was not stored "
        "(retry to store it as new data)"
    )
