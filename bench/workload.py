"""The multi-tenant workload: N users × M turns through one shared Agent, with the checks
the seed promises — exact-token isolation, exact budget totals — and RSS sampled per phase.

Isolation is tested adversarially: user u asks about project u, and the text that best
matches that question anywhere in the suite is the *next* user's note, which carries the next
user's secret. A tenant-blind index would hand it to u. A violation is any exact secret of
another user in u's run output, recall or export (whole tokens, never substrings of ids).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from bench.topology import Suite
from loomflow.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    budget_pb2,
    budget_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
    tenancy_pb2,
)

TOKEN = re.compile(r"[A-Za-z0-9_]+")


def project(index: int) -> str:
    return f"project{index:06d}"


@dataclass
class UserPlan:
    index: int
    user_id: str
    secret: str
    token: str = ""

    def prompt(self, turn: int, users: int) -> str:
        if turn == 0:
            # Targets the previous user's question, so it is *their* best match, not ours.
            return f"the launch code for {project((self.index - 1) % users)} is {self.secret}"
        return self.question()

    def question(self) -> str:
        return f"what is the launch code for {project(self.index)}"


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_micros: int = 0

    def add(self, charge: object) -> None:
        self.input_tokens += int(getattr(charge, "input_tokens", 0))
        self.output_tokens += int(getattr(charge, "output_tokens", 0))
        self.total_tokens += int(getattr(charge, "total_tokens", 0))
        self.cost_micros += int(getattr(charge, "cost_micros", 0))


@dataclass
class WorkloadResult:
    latencies_s: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    turns: int = 0
    concurrency: int = 0
    errors: list[str] = field(default_factory=list)
    isolation_violations: list[str] = field(default_factory=list)
    budget_mismatches: list[str] = field(default_factory=list)
    vacuous_checks: list[str] = field(default_factory=list)
    rss_samples: list[tuple[int, int]] = field(default_factory=list)  # (tenants so far, KiB over all processes)
    phase_throughput: list[tuple[int, float]] = field(default_factory=list)  # (tenants so far, turns/s in phase)


def make_plans(users: int, prefix: str) -> list[UserPlan]:
    return [UserPlan(i, f"{prefix}-{i}", "sec" + secrets.token_hex(10)) for i in range(users)]


def foreign_secrets_in(text: str, own: UserPlan, owners: dict[str, str]) -> list[str]:
    return [f"{owners[t]}'s secret" for t in TOKEN.findall(text) if t in owners and owners[t] != own.user_id]


async def run_workload(
    suite: Suite,
    users: int,
    turns: int,
    concurrency: int,
    *,
    phases: int = 4,
    sample_rss: Callable[[], int] | None = None,
    progress: Callable[[int], None] | None = None,
    prefix: str = "",
    warmup_users: int = 8,
) -> WorkloadResult:
    plans = make_plans(users, prefix or f"u{secrets.token_hex(3)}")
    owners = {p.secret: p.user_id for p in plans}
    for plan in plans:
        plan.token = suite.user_token(plan.user_id)
    operator = (("authorization", f"Bearer {suite.operator_token()}"),)
    result = WorkloadResult(concurrency=concurrency)
    usage: dict[str, Usage] = {p.user_id: Usage() for p in plans}
    gate = asyncio.Semaphore(concurrency)
    options = [("grpc.max_concurrent_streams", 1000)]
    async with (
        grpc.aio.insecure_channel(suite.agent_address, options=options) as agent_channel,
        grpc.aio.insecure_channel(suite.internal_address["memory"]) as memory_channel,
        grpc.aio.insecure_channel(suite.internal_address["budget"]) as budget_channel,
    ):
        agent = agent_pb2_grpc.AgentServiceStub(agent_channel)
        memory = memory_pb2_grpc.MemoryServiceStub(memory_channel)
        budget = budget_pb2_grpc.BudgetServiceStub(budget_channel)

        async def one_user(plan: UserPlan) -> None:
            metadata = (("authorization", f"Bearer {plan.token}"),)
            scope = tenancy_pb2.UserScope(user_id=plan.user_id)
            for turn in range(turns):
                request = agent_pb2.RunRequest(
                    scope=scope,
                    options=agent_pb2.RunOptions(prompt=plan.prompt(turn, users), session_id=f"{plan.user_id}-s"),
                )
                async with gate:
                    started = time.perf_counter()
                    try:
                        reply = await agent.Run(request, metadata=metadata, timeout=60)
                    except grpc.aio.AioRpcError as error:
                        result.errors.append(f"{plan.user_id} turn {turn}: {error.code().name} {error.details()}")
                        continue
                    result.latencies_s.append(time.perf_counter() - started)
                result.turns += 1
                usage[plan.user_id].add(reply.usage)
                for leak in foreign_secrets_in(reply.output, plan, owners):
                    result.isolation_violations.append(f"{plan.user_id} run output contains {leak}")
                if progress is not None:
                    progress(1)

        # Warm up outside the measurement: connections, caches, first-touch allocations.
        warmup_scope = tenancy_pb2.UserScope(user_id=f"{prefix or 'w'}-warmup")
        warmup_token = (("authorization", f"Bearer {suite.user_token(warmup_scope.user_id)}"),)
        for n in range(warmup_users):
            await agent.Run(
                agent_pb2.RunRequest(scope=warmup_scope, options=agent_pb2.RunOptions(prompt=f"warm up {n}")),
                metadata=warmup_token,
                timeout=60,
            )
        if sample_rss is not None:
            result.rss_samples.append((0, sample_rss()))
        started = time.perf_counter()
        per_phase = max(1, -(-users // phases))
        for first in range(0, users, per_phase):
            phase_started, turns_before = time.perf_counter(), result.turns
            await asyncio.gather(*(one_user(p) for p in plans[first : first + per_phase]))
            tenants = min(users, first + per_phase)
            elapsed = time.perf_counter() - phase_started
            result.phase_throughput.append((tenants, (result.turns - turns_before) / elapsed if elapsed else 0.0))
            if sample_rss is not None:
                result.rss_samples.append((tenants, sample_rss()))
        result.wall_seconds = time.perf_counter() - started

        async def audit_user(plan: UserPlan) -> None:
            scope = tenancy_pb2.UserScope(user_id=plan.user_id)
            async with gate:
                recall = await memory.Recall(
                    memory_pb2.RecallRequest(scope=scope, query=plan.question(), limit=10),
                    metadata=operator,
                    timeout=60,
                )
                exported: list[str] = []
                async for item in memory.Export(
                    memory_pb2.MemoryServiceExportRequest(scope=scope), metadata=operator, timeout=60
                ):
                    exported.append(str(item))
                status = await budget.GetStatus(budget_pb2.GetStatusRequest(scope=scope), metadata=operator, timeout=60)
            for hit in recall.hits:
                for leak in foreign_secrets_in(f"{hit.episode.input} {hit.episode.output}", plan, owners):
                    result.isolation_violations.append(f"{plan.user_id} recall contains {leak}")
            export_text = "\n".join(exported)
            for leak in foreign_secrets_in(export_text, plan, owners):
                result.isolation_violations.append(f"{plan.user_id} export contains {leak}")
            if plan.secret not in TOKEN.findall(export_text):
                result.vacuous_checks.append(f"{plan.user_id}'s own secret is missing from its export")
            expected, total = usage[plan.user_id], status.total
            observed = (total.input_tokens, total.output_tokens, total.total_tokens, total.cost_micros)
            wanted = (expected.input_tokens, expected.output_tokens, expected.total_tokens, expected.cost_micros)
            if observed != wanted:
                result.budget_mismatches.append(
                    f"{plan.user_id}: GetStatus (in, out, total, micros)={observed} but runs charged {wanted}"
                )

        await asyncio.gather(*(audit_user(p) for p in plans))
    return result
