"""Bi-temporal fact rules every backend applies.

Valid time ``[valid_from, valid_until)`` says when a fact held in the world;
transaction time ``[recorded_at, retracted_at)`` says when the service believed
it. Stored versions are never edited except to set ``retracted_at`` once, so a
question about the past ("what was true at T1, as we knew it at T2") always gets
the answer the service would have given at T2.

Asserting ``(subject, predicate, object)`` over ``[vf, vu)`` makes the new
object *the* value of that subject and predicate over the interval (one value
at a time: later assertions win). Each believed version of the same subject and
predicate that overlaps the interval is retracted now, and the parts of its
validity outside the interval are stored as new versions of the same fact id
(usually one: the old fact closed at ``vf``). If a believed version with the
same object already covers the interval, the assertion changes nothing and
returns it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from loomflow.memory.ids import new_fact_id, new_row_id
from loomflow.memory.models import Fact, FactAssertion, FactQuery, Micros


def _ends_after(until: Micros | None, instant: Micros) -> bool:
    return until is None or until > instant


def _overlaps(row: Fact, start: Micros, end: Micros | None) -> bool:
    return _ends_after(row.valid_until, start) and (end is None or row.valid_from < end)


def _covers(row: Fact, start: Micros, end: Micros | None) -> bool:
    if row.valid_from > start:
        return False
    if row.valid_until is None:
        return True
    return end is not None and row.valid_until >= end


@dataclass(frozen=True, slots=True)
class AssertionPlan:
    """What one assertion changes: versions to retract at ``at`` and versions to insert."""

    fact: Fact
    retract: list[Fact]
    insert: list[Fact]
    superseded: list[Fact]

    @property
    def changes_nothing(self) -> bool:
        return not self.insert


def plan_assertion(tenant: str, believed: Sequence[Fact], assertion: FactAssertion, at: Micros) -> AssertionPlan:
    """Plans an assertion over the currently believed versions of its subject and predicate.

    ``believed``: the tenant's versions with that subject and predicate whose
    ``retracted_at`` is unset. The caller applies the plan atomically.
    """
    start, end = assertion.valid_from, assertion.valid_until
    same = [r for r in believed if r.object == assertion.object and _covers(r, start, end)]
    if same:
        existing = min(same, key=lambda r: (r.recorded_at, r.row_id))
        return AssertionPlan(fact=existing, retract=[], insert=[], superseded=[])
    fact = Fact(
        tenant=tenant,
        id=new_fact_id(),
        row_id=new_row_id(),
        subject=assertion.subject,
        predicate=assertion.predicate,
        object=assertion.object,
        session_id=assertion.session_id,
        valid_from=start,
        valid_until=end,
        recorded_at=at,
    )
    retract: list[Fact] = []
    pieces: list[Fact] = []
    superseded: list[Fact] = []
    for row in sorted(believed, key=lambda r: (r.valid_from, r.row_id)):
        if not _overlaps(row, start, end):
            continue
        retract.append(row)
        kept: list[Fact] = []
        if row.valid_from < start:
            kept.append(replace(row, row_id=new_row_id(), valid_until=start, recorded_at=at))
        if end is not None and _ends_after(row.valid_until, end):
            kept.append(replace(row, row_id=new_row_id(), valid_from=end, recorded_at=at))
        pieces.extend(kept)
        superseded.extend(kept or [replace(row, retracted_at=at)])
    return AssertionPlan(fact=fact, retract=retract, insert=[*pieces, fact], superseded=superseded)


def visible(row: Fact, query: FactQuery) -> bool:
    """Whether a stored version answers a query (history: every version)."""
    if query.subject and row.subject != query.subject:
        return False
    if query.predicate and row.predicate != query.predicate:
        return False
    if query.include_history:
        return True
    known = row.recorded_at <= query.known_at and _ends_after(row.retracted_at, query.known_at)
    held = row.valid_from <= query.valid_at and _ends_after(row.valid_until, query.valid_at)
    return known and held


def answer_order(row: Fact) -> tuple[str, str, int, int, str]:
    """The order QueryFacts and Export list versions in (SQL backends ORDER BY the same, COLLATE "C")."""
    return (row.subject, row.predicate, row.valid_from, row.recorded_at, row.row_id)


BEFORE_EVERY_FACT = ("", "", 0, 0, "")
"""An answer-order key below every stored fact's (subjects are never empty): a page resuming after
it starts at the first fact."""


def answer(rows: Iterable[Fact], query: FactQuery) -> list[Fact]:
    """Filters, orders and limits versions for a query (for backends that cannot do it in their engine)."""
    after = query.after
    found = (r for r in rows if visible(r, query) and (after is None or answer_order(r) > after))
    return sorted(found, key=answer_order)[: query.limit]
