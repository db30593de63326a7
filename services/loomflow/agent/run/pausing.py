"""Pausing a run for its caller's tools, and taking it back (the store and sweeper: agent/paused.py).

The paused state is the whole run (conversation, charges, records, the held
reservation, the turn count and the run time left), so any replica resumes it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from loomflow.agent import paused
from loomflow.agent.definitions import to_json
from loomflow.agent.seeding import Seed
from loomflow.agent.store import PausedRecord
from loomflow.agent.toolcalls import HeldApprovals
from loomflow.v1 import agent_pb2, budget_pb2

if TYPE_CHECKING:
    from loomflow.agent.run.loop import Run


async def pause(run: Run) -> agent_pb2.RunResponse:
    """Stores the run with its hold and answers REQUIRES_ACTION; any replica resumes it."""
    pauses = run.runner.pauses
    assert pauses is not None
    settlement = run.settlement
    now = paused.now_micros()
    expires_at = now + round(pauses.settings.ttl_for(run.ctx.tenant) * 1_000_000)
    started_at = now - round((time.monotonic() - run.deadlines.started) * 1_000_000)  # checked against ForgetUser
    record = PausedRecord(
        run.ctx.tenant,
        run.run_id,
        paused.dumps(snapshot(run)),
        settlement.reservation,
        expires_at,
        started_at=started_at,
    )
    await pauses.store.pause(record, now, pauses.settings.max_per_tenant)  # a refusal: run() releases the hold
    settlement.reservation = ""  # the stored run holds it now (the sweeper releases it at expiry)
    response = run.response()
    response.status = agent_pb2.RUN_STATUS_REQUIRES_ACTION
    for call in run.paused_calls:
        response.pending_tool_calls.add(
            call_id=call.call_id,
            tool_name=call.tool_name,
            arguments=call.arguments,
            decision_id=call.decision_id,
            approval_id=call.approval_id,
        )
    response.expires_at.FromMicroseconds(expires_at)
    return response


def snapshot(run: Run) -> dict[str, Any]:
    """The run's state as JSON-ready values (the reservation is stored beside it, in the record)."""
    settlement = run.settlement
    return {
        "options": paused.pack(run.options),
        "scope": paused.pack(run.scope),
        "model": run.model.name,
        "agent": to_json(run.agent) if run.agent is not None else None,
        "turns": run.turns,
        "work_left_s": max(0.0, run.deadlines.work - time.monotonic()),
        "messages": [paused.message_dict(m) for m in run.messages],
        "memories": run.memories,
        "texts": run.texts,
        "charged": paused.pack(settlement.charged),
        "records": [paused.pack(r) for r in run.records],
        "warnings": [paused.pack(w) for w in settlement.warnings.values()],
        "recalled_ids": run.recalled_ids,
        "seed": {
            "history": [paused.message_dict(m) for m in run.seed.history],
            "ids": run.seed.history_episode_ids,
            "blocks": run.seed.blocks,
            "facts": run.seed.facts,
        },
        "offered": [s.name for s in run.tool_specs if s.name not in run.caller_tags],
        "held": {"defer": run.held.defer, "ids": list(run.held.ids), "used": sorted(run.held.used)},
        "pending": [c.call_id for c in run.paused_calls],
    }


def restore(run: Run, state: dict[str, Any], reservation: str) -> None:
    """Puts a :func:`snapshot` back into a run built with the paused run's id and time left."""
    run.turns = int(state["turns"])
    run.messages = [paused.message_from(m) for m in state["messages"]]
    run.memories = list(state["memories"])
    run.texts = list(state["texts"])
    run.records = [paused.unpack(r, agent_pb2.ToolCallRecord) for r in state["records"]]
    run.settlement.restore(
        paused.unpack(state["charged"], budget_pb2.Charge),
        (paused.unpack(w, budget_pb2.BudgetWarning) for w in state["warnings"]),
        reservation,
    )
    run.recalled_ids = list(state["recalled_ids"])
    seed = state["seed"]
    history = [paused.message_from(m) for m in seed["history"]]
    run.seed = Seed(history, list(seed["ids"]), [(b[0], b[1]) for b in seed["blocks"]], list(seed["facts"]))
    offered = set(state["offered"])
    run.tool_specs = tuple(s for s in run.tool_specs if s.name in offered or s.name in run.caller_tags)
    held = state["held"]
    run.held = HeldApprovals(bool(held["defer"]), tuple(held["ids"]), set(held["used"]))
