"""Bi-temporal facts, property-based, on every backend.

Hypothesis generates sequences of assertions and retractions of one subject and
predicate; a reference model replays them. The model is deliberately naive: a
timeline of valid-time points, each painted with the fact that the latest
assertion covering it made true; a retraction erases that fact's paint. Asking
"what was true at V, as known at K" replays only the operations recorded at or
before K. Every backend must answer every (V, K) exactly like the model, which
checks both axes at once: valid time (which object held at V) and transaction
time (later operations never change what was known at K).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loomflow.kernel.errors import NotFound
from loomflow.memory.models import FactAssertion, FactQuery, now_micros
from loomflow.memory.store import MemoryStore

UNIT = 1_000  # one valid-time step, in microseconds
HORIZON = 24  # valid-time points 0..HORIZON-1 are checked; finite bounds stay below 20
PROBES = (0, 2, 5, 8, 11, 14, 17, 19, 23)


@dataclass(frozen=True)
class Assert:
    obj: str
    start: int
    end: int | None


@dataclass(frozen=True)
class Retract:
    which: int  # index into the assertions made so far (modulo their count)


def _assert_op() -> st.SearchStrategy[Assert]:
    def build(obj: str, start: int, length: int | None) -> Assert:
        return Assert(obj, start, None if length is None else min(start + length, 20))

    return st.builds(
        build, st.sampled_from(["a", "b", "c"]), st.integers(0, 18), st.one_of(st.none(), st.integers(1, 8))
    )


OPS = st.lists(st.one_of(_assert_op(), st.builds(Retract, st.integers(0, 20))), min_size=1, max_size=9)


class Model:
    """Valid-time points painted with (fact number, object); replayed per known-at instant."""

    def __init__(self) -> None:
        self.cells: list[tuple[int, str] | None] = [None] * HORIZON
        self.objects: list[str] = []

    def apply(self, op: Assert | Retract) -> int | None:
        """Applies one operation; returns the fact number an assertion answers with, None for a failed retract."""
        if isinstance(op, Assert):
            end = HORIZON if op.end is None else op.end
            span = self.cells[op.start : end]
            first = span[0]
            if first is not None and first[1] == op.obj and all(c == first for c in span):
                return first[0]  # already believed over the whole interval: nothing changes
            number = len(self.objects)
            self.objects.append(op.obj)
            for v in range(op.start, end):
                self.cells[v] = (number, op.obj)
            return number
        if not self.objects:
            return None
        target = op.which % len(self.objects)
        if not any(c is not None and c[0] == target for c in self.cells):
            return None
        self.cells = [None if c is not None and c[0] == target else c for c in self.cells]
        return target


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
async def test_bitemporal_queries_answer_like_the_reference_model_on_both_axes(
    store: MemoryStore, ops: list[Assert | Retract]
) -> None:
    tenant = f"facts-{uuid.uuid4().hex}"
    valid_base = 1_600_000_000_000_000
    recorded_base = now_micros()
    fact_ids: list[str] = []  # fact number → id
    snapshots: list[tuple[int, list[tuple[int, str] | None]]] = [(recorded_base, [None] * HORIZON)]
    model = Model()

    for step, op in enumerate(ops, start=1):
        at = recorded_base + step * 1000
        expected = model.apply(op)
        if isinstance(op, Assert):
            result = await store.assert_fact(
                tenant,
                FactAssertion(
                    "alice",
                    "lives_in",
                    op.obj,
                    valid_base + op.start * UNIT,
                    None if op.end is None else valid_base + op.end * UNIT,
                ),
                at,
            )
            if expected == len(fact_ids):
                assert result.fact.id not in fact_ids, "a new assertion must create a new fact"
                fact_ids.append(result.fact.id)
            else:
                assert expected is not None
                assert result.fact.id == fact_ids[expected], "re-asserting a believed object must be a no-op"
        else:
            target = op.which % len(fact_ids) if fact_ids else None
            if expected is None:
                if target is not None:
                    try:
                        await store.retract_fact(tenant, fact_ids[target], at)
                    except NotFound:
                        pass
                    else:
                        raise AssertionError(f"retracting fact {target}, no longer believed, must be NOT_FOUND")
            else:
                retracted = await store.retract_fact(tenant, fact_ids[expected], at)
                assert retracted.retracted_at == at
        snapshots.append((at, list(model.cells)))

    for known_at, cells in snapshots:
        for v in PROBES:
            query = FactQuery(valid_at=valid_base + v * UNIT, known_at=known_at, subject="alice")
            answer = [(f.id, f.object) for f in await store.query_facts(tenant, query)]
            cell = cells[v]
            wanted = [] if cell is None else [(fact_ids[cell[0]], cell[1])]
            assert answer == wanted, f"valid at {v}, known at step {snapshots.index((known_at, cells))}: {ops}"
