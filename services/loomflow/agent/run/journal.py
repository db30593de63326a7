"""The audit entries a run writes: one per turn (the model call, its tool results, the answer on the last),
and one for an interruption or for the results a caller hands a paused run.

Each entry is a single atomic Append, so a failure never leaves a half-written record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from loomflow.agent.dependencies import Dependencies, dependency_error
from loomflow.agent.models.base import ModelResponse
from loomflow.agent.run.limits import Deadlines
from loomflow.agent.toolcalls import ToolOutcome, to_struct
from loomflow.v1 import audit_pb2, budget_pb2, tenancy_pb2

AUDIT_TEXT_CHARS = 4096


class Journal:
    """Builds and appends one run's audit entries (actor ``agent``)."""

    def __init__(
        self,
        deps: Dependencies,
        scope: tenancy_pb2.UserScope,
        session_id: str,
        run_id: str,
        model_name: str,
        deadlines: Deadlines,
    ) -> None:
        self.deps = deps
        self.scope = scope
        self.session_id = session_id
        self.run_id = run_id
        self.model_name = model_name
        self.deadlines = deadlines

    def entry(self, action: str, payload: dict[str, Any]) -> audit_pb2.AppendRequest:
        return audit_pb2.AppendRequest(
            scope=self.scope,
            session_id=self.session_id,
            run_id=self.run_id,
            actor="agent",
            action=action,
            payload=to_struct(payload),
        )

    def turn_entry(
        self,
        turn: int,
        response: ModelResponse | None,
        outcomes: Sequence[ToolOutcome],
        actual: budget_pb2.Usage,
        *,
        prompt: str,
        recalled_ids: Sequence[str],
        history_ids: Sequence[str],
        final_output: str | None,
        interruption: str,
    ) -> audit_pb2.AppendRequest:
        """The turn's ``model_call`` entry; the first names what the run was asked and what it recalled,
        the last (``final_output`` given) what it answered."""
        payload: dict[str, Any] = {
            "turn": turn,
            "model": self.model_name,
            "input_tokens": actual.input_tokens,
            "output_tokens": actual.output_tokens,
            "cached_input_tokens": actual.cached_input_tokens,
            "wall_clock_ms": actual.wall_clock_ms,
            "stop_reason": response.stop_reason if response is not None else "timeout",
        }
        if turn == 1:
            payload["prompt"] = prompt[:AUDIT_TEXT_CHARS]
            payload["recalled_episode_ids"] = list(recalled_ids)
            if history_ids:
                payload["history_episode_ids"] = list(history_ids)
        if outcomes:
            payload["tool_results"] = [
                {
                    "call_id": o.record.call_id,
                    "tool": o.record.tool_name,
                    "decision_id": o.record.decision_id,
                    "executed": o.record.executed,
                    "result": o.record.result[:AUDIT_TEXT_CHARS],
                }
                for o in outcomes
            ]
        if final_output is not None:
            payload["final"] = True
            payload["output"] = final_output[:AUDIT_TEXT_CHARS]
            payload["interrupted"] = bool(interruption)
            payload["interruption_reason"] = interruption
        return self.entry("model_call", payload)

    async def append(self, entry: audit_pb2.AppendRequest) -> None:
        deps = self.deps
        try:
            await deps.audit.Append(entry, metadata=deps.metadata, timeout=deps.timeout(self.deadlines.hard))
        except grpc.aio.AioRpcError as error:
            raise dependency_error("audit", error) from None
