"""Rows ↔ records and the rules both engines share (caps, not-found), so each engine file holds only SQL plumbing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loomflow.agent.store.base import ErasureRow, PausedRecord, StoredDefinition
from loomflow.kernel.errors import Aborted, NotFound, ResourceExhausted


def definition_from(row: Sequence[Any]) -> StoredDefinition:
    return StoredDefinition(name=row[0], body=row[1], version=int(row[2]), updated_at=int(row[3]))


def paused_from(row: Sequence[Any]) -> PausedRecord:
    return PausedRecord(
        tenant=row[0], run_id=row[1], state=row[2], reservation_id=row[3], expires_at=int(row[4]), status=row[5]
    )


def paused_values(record: PausedRecord) -> tuple[Any, ...]:
    return (record.tenant, record.run_id, record.state, record.reservation_id, record.expires_at)


def agent_not_found(name: str) -> NotFound:
    return NotFound(f"agent {name!r} not found")


def run_not_found(run_id: str) -> NotFound:
    return NotFound(f"run {run_id!r} not found")


def refuse_over_cap(live: int, cap: int) -> None:
    if cap > 0 and live >= cap:
        raise ResourceExhausted(
            f"this user already has {live} paused runs (at most {cap}): continue or let them expire first",
            limit="paused_runs",
        )


def erasure_from(row: Sequence[Any]) -> ErasureRow:
    return ErasureRow(
        id=row[0],
        tenant=row[1],
        request_id=row[2],
        body=row[3],
        state=row[4],
        next_attempt_at=int(row[5]),
        leased_until=int(row[6]),
        created_at=int(row[7]),
    )


def erasure_values(row: ErasureRow) -> tuple[Any, ...]:
    return (
        row.id,
        row.tenant,
        row.request_id,
        row.body,
        row.state,
        row.next_attempt_at,
        row.leased_until,
        row.created_at,
    )


def erasure_not_found(erasure_id: str) -> NotFound:
    return NotFound(f"erasure {erasure_id!r} not found")


def refuse_if_forgotten(cutoff: int | None, record: PausedRecord) -> None:
    if cutoff is not None and record.started_at < cutoff:
        raise Aborted(
            "this user's data was erased (ForgetUser) after this run's request started; the run was not paused "
            "(start a new run)"
        )
