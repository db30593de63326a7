"""One Check: route to the tenant's policy, decide, apply a remembered answer, stamp an id.

The hot path touches no storage once the tenant's policy is cached; only an
ASK within a run reads the store, to find an answer remembered for that run
and tool. Any failure propagates as an error status, which the Agent treats as
a deny (fail closed).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from loomflow.policy import metrics
from loomflow.policy.approvals import Approvals
from loomflow.policy.book import PolicyBook
from loomflow.policy.engine import decide
from loomflow.policy.ids import new_id
from loomflow.policy.models import Decision, Mode, Verdict

EMPTY: Mapping[str, Any] = {}


@dataclass(frozen=True)
class CheckResult:
    decision_id: str
    verdict: Verdict
    mode: Mode
    approval_id: str = ""


class Checker:
    def __init__(self, book: PolicyBook, approvals: Approvals) -> None:
        self._book = book
        self._approvals = approvals

    async def check(
        self,
        tenant: str,
        tool_name: str,
        arguments: Mapping[str, Any],
        tags: Collection[str],
        run_id: str = "",
    ) -> CheckResult:
        policy = self._book.cached(tenant)
        if policy is None:
            policy, _ = await self._book.applicable(tenant)
        verdict = decide(policy, tool_name, arguments if policy.reads_arguments else EMPTY, tags)
        approval_id = ""
        if verdict.decision is Decision.ASK and run_id:
            remembered = await self._approvals.remembered(tenant, run_id, tool_name)
            if remembered is not None:
                approval_id = remembered.approval_id
                verdict = Verdict(
                    remembered.decision,
                    verdict.matched_rule,
                    f"remembered for this run: approval {approval_id} was "
                    f"{'approved' if remembered.decision is Decision.ALLOW else 'denied'}",
                )
        metrics.record_decision(tenant, verdict.decision.value)
        return CheckResult(new_id("dec_"), verdict, policy.mode, approval_id)

    async def self_approvable(self, tenant: str, tool_name: str, arguments: Mapping[str, Any]) -> bool:
        """Whether the tenant's own policy lets the tenant approve this call themself: the rule
        that matches it asks and says ``self_approval``. Decided here, never taken from the caller."""
        policy, _ = await self._book.applicable(tenant)
        matched = policy.first_match(tool_name, arguments)
        return matched is not None and matched.rule.decision is Decision.ASK and matched.rule.self_approval
