"""An erasure as data: its steps (one per service), their progress, JSON for the store, protobuf for the wire."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from loomflow.agent.store.base import ErasureRow
from loomflow.kernel.tenancy import scope_for
from loomflow.v1 import agent_pb2

PENDING = "pending"
DONE = "done"

SERVICES = ("agent", "memory", "budget", "policy", "audit")
"""The order steps run in. Audit goes last: its step shreds the payloads and then writes the receipt, which
needs every other service's counts; the Agent's own step goes first, so the holds of paused runs return
before Budget forgets the reservations."""

_STATE_TO_WIRE = {PENDING: agent_pb2.ERASURE_STATE_PENDING, DONE: agent_pb2.ERASURE_STATE_DONE}


@dataclass(frozen=True)
class Step:
    service: str
    state: str = PENDING
    counts: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    last_error: str = ""
    done_at: int = 0

    def succeeded(self, counts: dict[str, int], at: int) -> Step:
        return replace(self, state=DONE, counts=counts, attempts=self.attempts + 1, last_error="", done_at=at)

    def failed(self, error: str) -> Step:
        return replace(self, attempts=self.attempts + 1, last_error=error[:500])


@dataclass(frozen=True)
class Job:
    id: str
    tenant: str
    request_id: str
    requested_by: str
    created_at: int
    steps: tuple[Step, ...]
    done_at: int = 0
    next_attempt_at: int = 0

    @property
    def state(self) -> str:
        return DONE if all(s.state == DONE for s in self.steps) else PENDING

    @property
    def attempts(self) -> int:
        return max((s.attempts for s in self.steps if s.state == PENDING), default=0)

    def with_step(self, step: Step) -> Job:
        return replace(self, steps=tuple(step if s.service == step.service else s for s in self.steps))

    def step(self, service: str) -> Step:
        return next(s for s in self.steps if s.service == service)

    def to_row(self) -> ErasureRow:
        return ErasureRow(
            self.id, self.tenant, self.request_id, self.body(), self.state, self.next_attempt_at, 0, self.created_at
        )

    def body(self) -> str:
        return json.dumps(
            {
                "requested_by": self.requested_by,
                "done_at": self.done_at,
                "steps": [
                    {
                        "service": s.service,
                        "state": s.state,
                        "counts": s.counts,
                        "attempts": s.attempts,
                        "last_error": s.last_error,
                        "done_at": s.done_at,
                    }
                    for s in self.steps
                ],
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @staticmethod
    def new(erasure_id: str, tenant: str, request_id: str, requested_by: str, at: int) -> Job:
        return Job(erasure_id, tenant, request_id, requested_by, at, tuple(Step(s) for s in SERVICES), 0, at)

    @staticmethod
    def from_row(row: ErasureRow) -> Job:
        body = json.loads(row.body)
        steps = tuple(
            Step(s["service"], s["state"], dict(s["counts"]), s["attempts"], s["last_error"], s["done_at"])
            for s in body["steps"]
        )
        return Job(
            row.id,
            row.tenant,
            row.request_id,
            body["requested_by"],
            row.created_at,
            steps,
            body["done_at"],
            row.next_attempt_at,
        )

    def to_proto(self) -> agent_pb2.Erasure:
        message = agent_pb2.Erasure(
            erasure_id=self.id,
            scope=scope_for(self.tenant),
            state=_STATE_TO_WIRE[self.state],
            requested_by=self.requested_by,
        )
        message.created_at.FromMicroseconds(self.created_at)
        if self.done_at:
            message.done_at.FromMicroseconds(self.done_at)
        elif self.next_attempt_at:
            message.next_attempt_at.FromMicroseconds(self.next_attempt_at)
        for s in self.steps:
            step = message.steps.add(
                service=s.service, state=_STATE_TO_WIRE[s.state], attempts=s.attempts, last_error=s.last_error
            )
            step.counts.update(s.counts)
            if s.done_at:
                step.done_at.FromMicroseconds(s.done_at)
        return message
