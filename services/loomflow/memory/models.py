"""The Memory service's domain types: plain dataclasses, no gRPC.

Every instant is an ``int`` of microseconds since the Unix epoch (UTC): exact,
totally ordered and stored the same way by every backend, so bi-temporal
comparisons never depend on a driver's timestamp rounding.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

Micros = int
"""Microseconds since the Unix epoch, UTC."""


def now_micros() -> Micros:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class EpisodeDraft:
    """What a caller asks to remember."""

    session_id: str
    input: str
    output: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    run_id: str = ""

    @property
    def text(self) -> str:
        return episode_text(self.input, self.output)


def episode_text(input_text: str, output_text: str) -> str:
    """The text recall matches: the turn's input and output."""
    return f"{input_text}\n{output_text}"


@dataclass(frozen=True, slots=True)
class Episode:
    """One remembered turn. ``seq`` orders a tenant's episodes by storage (1, 2, ...)."""

    tenant: str
    id: str
    seq: int
    session_id: str
    input: str
    output: str
    metadata: Mapping[str, str]
    run_id: str
    created_at: Micros

    @property
    def text(self) -> str:
        return episode_text(self.input, self.output)


@dataclass(frozen=True, slots=True)
class RecallQuery:
    text: str
    limit: int
    session_id: str | None = None
    min_score: float = 0.0
    exclude_session_id: str | None = None
    """Leave this session's episodes out (a conversation the caller already holds as history)."""


@dataclass(frozen=True, slots=True)
class SessionPage:
    """One page of a session's episodes, newest first: those with ``seq < before_seq`` (None: the newest)."""

    session_id: str
    limit: int
    before_seq: int | None = None


@dataclass(frozen=True, slots=True)
class RecallHit:
    episode: Episode
    score: float
    lexical_score: float
    vector_score: float


@dataclass(frozen=True, slots=True)
class BlockWrite:
    label: str
    session_id: str
    content: str
    expected_version: int | None = None
    """None: last writer wins; 0: the block must not exist; n: the stored version must be n."""
    max_tenant_bytes: int = 0
    """Cap on the UTF-8 bytes of all the tenant's blocks after this write (0: no cap)."""


@dataclass(frozen=True, slots=True)
class Block:
    tenant: str
    label: str
    session_id: str
    content: str
    version: int
    updated_at: Micros


@dataclass(frozen=True, slots=True)
class FactAssertion:
    subject: str
    predicate: str
    object: str
    valid_from: Micros
    valid_until: Micros | None
    session_id: str = ""


@dataclass(frozen=True, slots=True)
class Fact:
    """One stored version of a fact.

    ``id`` names the fact; when an assertion closes part of its validity the
    closed remainder is stored as a new version (new ``row_id``, same ``id``)
    and the old version gets ``retracted_at``, so what was known earlier stays
    answerable.
    """

    tenant: str
    id: str
    row_id: str
    subject: str
    predicate: str
    object: str
    session_id: str
    valid_from: Micros
    valid_until: Micros | None
    recorded_at: Micros
    retracted_at: Micros | None = None


@dataclass(frozen=True, slots=True)
class AssertionResult:
    fact: Fact
    superseded: list[Fact]


@dataclass(frozen=True, slots=True)
class FactQuery:
    """``valid_at``/``known_at`` are concrete instants (the servicer fills in "now")."""

    valid_at: Micros
    known_at: Micros
    subject: str = ""
    predicate: str = ""
    include_history: bool = False
    limit: int = 100
    after: tuple[str, str, int, int, str] | None = None
    """Keyset paging: only versions after this :func:`loomflow.memory.facts.answer_order` key."""


@dataclass(frozen=True, slots=True)
class ForgetScope:
    """Which of a tenant's data a Forget covers: one session or all, and optionally only older data."""

    session_id: str | None = None
    before: Micros | None = None


@dataclass(frozen=True, slots=True)
class ForgetResult:
    episodes_deleted: int = 0
    blocks_deleted: int = 0
    facts_deleted: int = 0


ExportRecord = Episode | Block | Fact
