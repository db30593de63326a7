"""Tenant attacks on every backend of every stateful service, through real gRPC.

A crowd of tenants whose ids are attacks — SQL (quotes, comments, LIKE
wildcards), Redis key syntax (``:``, ``*``, ``{}`` hash-tag braces), Chroma filter
syntax (``$ne``, ``$and``), prefixes of each other (``a``, ``a:b``), and a
Cyrillic look-alike of an ordinary id — each stores a secret, then reads with
queries that are attacks too, and guesses the other tenants' real ids. Nothing
crosses: every tenant reads back exactly its own secrets, every guess is
NOT_FOUND, and forgetting the ``*`` and ``%`` tenants leaves everyone else whole.

Tenant ids are prefixed with a per-test value, so runs sharing the real Postgres
and Redis never meet; a wildcard that matched more than its own tenant would
still match the other tenants of its own test, which is what the test watches.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import grpc
import pytest

from loomflow.testing.suite import running_suite
from loomflow.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    budget_pb2,
    budget_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    tenancy_pb2,
)
from tests.support import backends

ATTACK_IDS = (
    "alice",
    "аlice",  # Cyrillic а: a different tenant, as it is in the identity provider (docs/reliability.md)
    "a",
    "a:b",
    "a:*",
    "*",
    "?",
    "[a-z]*",
    "{a}",
    "{",
    "a}b{",
    "%",
    "_",
    "a%",
    "\\",
    "' OR '1'='1",
    "x'; DROP TABLE memory_episodes; --",
    '{"$ne": ""}',
    "$and",
    "😀",
)
WILDCARDS = ("*", "%")
INJECTION_QUERIES = ("' OR '1'='1", "%", "*", '{"$ne": ""}', "secret OR 1=1 --")

NOT_FOUND = grpc.StatusCode.NOT_FOUND


def params(*names: str) -> list[object]:
    marks = {"postgres": [pytest.mark.postgres], "redis": [pytest.mark.redis]}
    return [pytest.param(n, id=n, marks=marks.get(n, [])) for n in names]


@contextlib.asynccontextmanager
async def serve(service: str, backend: str, tmp_path: Path, prefix: str) -> AsyncIterator[grpc.aio.Channel]:
    async with contextlib.AsyncExitStack() as stack:
        # Budget's Redis ledger takes a key prefix; Memory's isolates by tenant id alone, which is under test.
        isolated = backends.isolated(
            backend, tmp_path, f"reliability_{service}_{prefix}", key_prefix=service == "budget"
        )
        location = await stack.enter_async_context(isolated)
        overrides = {service: {"dsn": location}}
        running = await stack.enter_async_context(running_suite(tmp_path, services=service, overrides=overrides))
        yield running.channel


class Crowd:
    """The attacking tenants of one test, each with a secret only it may ever read."""

    def __init__(self) -> None:
        self.prefix = secrets.token_hex(4)
        self.ids = [f"{self.prefix}{attack}" for attack in ATTACK_IDS]
        self.secret = {tenant: f"secret{secrets.token_hex(6)}" for tenant in self.ids}

    @staticmethod
    def scope(tenant: str) -> tenancy_pb2.UserScope:
        return tenancy_pb2.UserScope(user_id=tenant)

    def others(self, tenant: str) -> list[str]:
        return [t for t in self.ids if t != tenant]

    def leaked(self, tenant: str, text: str) -> list[str]:
        """The other tenants whose secret appears in ``text``."""
        return [t for t in self.others(tenant) if self.secret[t] in text]

    def wildcard_tenants(self) -> list[str]:
        return [f"{self.prefix}{w}" for w in WILDCARDS]


async def expect_not_found(call: Awaitable[object], what: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == NOT_FOUND, f"{what}: {caught.value.code().name} {caught.value.details()}"


def guesses(real_id: str) -> list[str]:
    """Ids an attacker tries besides the real ones: neighbours and small integers."""
    flipped = real_id[:-1] + ("0" if real_id[-1:] != "0" else "1")
    return [flipped, real_id.upper(), "1", "0", real_id + "%", real_id[: max(1, len(real_id) // 2)] + "*"]


# -- memory ------------------------------------------------------------------------------------


async def memory_export(stub: memory_pb2_grpc.MemoryServiceAsyncStub, tenant: str) -> str:
    parts = []
    async for record in stub.Export(memory_pb2.MemoryServiceExportRequest(scope=Crowd.scope(tenant))):
        parts.append(str(record))
    return "\n".join(parts)


@pytest.mark.parametrize("backend", params("memory", "sqlite", "postgres", "redis", "chroma"))
async def test_memory_tenants_with_attack_ids_never_see_each_other(tmp_path: Path, backend: str) -> None:
    crowd = Crowd()
    async with serve("memory", backend, tmp_path, crowd.prefix) as channel:
        stub = memory_pb2_grpc.MemoryServiceStub(channel)
        episode_ids: dict[str, str] = {}
        fact_ids: dict[str, str] = {}
        for tenant in crowd.ids:
            scope, secret = crowd.scope(tenant), crowd.secret[tenant]
            stored = await stub.Remember(
                memory_pb2.RememberRequest(
                    scope=scope,
                    session_id="shared-session",
                    input=f"the launch code is {secret}",
                    # Metadata keys the Chroma backend itself uses, and filter operators: stored as data only.
                    metadata={"tenant": crowd.ids[0], "session_id": "other", "seq": "0", "$and": "[]"},
                )
            )
            episode_ids[tenant] = stored.episode.id
            await stub.PutBlock(memory_pb2.PutBlockRequest(scope=scope, label="notes", content=secret))
            fact = await stub.AssertFact(
                memory_pb2.AssertFactRequest(scope=scope, subject="launch", predicate="code", object=secret)
            )
            fact_ids[tenant] = fact.fact.id

        every_secret = " ".join(crowd.secret.values())
        for tenant in crowd.ids:
            scope = crowd.scope(tenant)
            for query in (every_secret, *INJECTION_QUERIES, "launch code"):
                recalled = await stub.Recall(memory_pb2.RecallRequest(scope=scope, query=query, limit=100))
                text = " ".join(h.episode.input for h in recalled.hits)
                assert not crowd.leaked(tenant, text), f"{tenant!r} recalled {crowd.leaked(tenant, text)}"
                assert all(h.episode.scope.user_id == tenant for h in recalled.hits)
            for session in ('{"$ne": ""}', "other", "*"):
                filtered = await stub.Recall(
                    memory_pb2.RecallRequest(scope=scope, query=every_secret, session_id=session, limit=100)
                )
                assert not filtered.hits, f"session filter {session!r} matched an episode of session 'shared-session'"
            block = await stub.GetBlock(memory_pb2.GetBlockRequest(scope=scope, label="notes"))
            assert block.block.content == crowd.secret[tenant]
            facts = await stub.QueryFacts(memory_pb2.QueryFactsRequest(scope=scope, subject="launch"))
            assert [f.object for f in facts.facts] == [crowd.secret[tenant]]
            exported = await memory_export(stub, tenant)
            assert crowd.secret[tenant] in exported
            assert not crowd.leaked(tenant, exported)

        attacker = crowd.ids[1]  # the look-alike of "alice" guesses everyone's real and neighbouring ids
        for victim in crowd.others(attacker):
            for guess in [episode_ids[victim], *guesses(episode_ids[victim])]:
                request = memory_pb2.GetEpisodeRequest(scope=crowd.scope(attacker), episode_id=guess)
                await expect_not_found(stub.GetEpisode(request), f"{attacker} reading {victim}'s episode")
            retract = memory_pb2.RetractFactRequest(scope=crowd.scope(attacker), fact_id=fact_ids[victim])
            await expect_not_found(stub.RetractFact(retract), f"{attacker} retracting {victim}'s fact")

        for wildcard in crowd.wildcard_tenants():
            await stub.Forget(memory_pb2.MemoryServiceForgetRequest(scope=crowd.scope(wildcard)))
        for tenant in crowd.ids:
            exported = await memory_export(stub, tenant)
            if tenant in crowd.wildcard_tenants():
                assert crowd.secret[tenant] not in exported
            else:
                assert exported.count(crowd.secret[tenant]) == 3, f"{tenant!r} lost data to a wildcard forget"


# -- budget ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", params("inprocess", "redis", "postgres"))
async def test_budget_ledgers_keep_attack_tenants_apart(tmp_path: Path, backend: str) -> None:
    crowd = Crowd()
    async with serve("budget", backend, tmp_path, crowd.prefix) as channel:
        stub = budget_pb2_grpc.BudgetServiceStub(channel)
        held: dict[str, str] = {}
        for n, tenant in enumerate(crowd.ids, start=1):
            scope = crowd.scope(tenant)
            committed = await stub.Reserve(
                budget_pb2.ReserveRequest(
                    scope=scope, call_id="call-1", model="echo", estimate=budget_pb2.Usage(input_tokens=n)
                )
            )
            await stub.Commit(
                budget_pb2.CommitRequest(
                    scope=scope, reservation_id=committed.reservation_id, actual=budget_pb2.Usage(input_tokens=n)
                )
            )
            open_hold = await stub.Reserve(
                budget_pb2.ReserveRequest(
                    scope=scope, call_id="call-2", model="echo", estimate=budget_pb2.Usage(input_tokens=1000 + n)
                )
            )
            held[tenant] = open_hold.reservation_id
        # A limit for the '*' tenant must bind only the '*' tenant.
        star = crowd.wildcard_tenants()[0]
        await stub.SetLimits(
            budget_pb2.SetLimitsRequest(
                scope=crowd.scope(star),
                target=budget_pb2.LIMIT_TARGET_USER,
                limits=[budget_pb2.Limit(dimension=budget_pb2.DIMENSION_TOTAL_TOKENS, window=budget_pb2.WINDOW_NONE)],
            )
        )

        attacker = crowd.ids[1]
        for victim in crowd.others(attacker):
            for guess in [held[victim], *guesses(held[victim])]:
                commit = budget_pb2.CommitRequest(
                    scope=crowd.scope(attacker), reservation_id=guess, actual=budget_pb2.Usage(input_tokens=10**9)
                )
                await expect_not_found(stub.Commit(commit), f"{attacker} committing {victim}'s hold")
                release = budget_pb2.ReleaseRequest(scope=crowd.scope(attacker), reservation_id=guess)
                await expect_not_found(stub.Release(release), f"{attacker} releasing {victim}'s hold")

        for n, tenant in enumerate(crowd.ids, start=1):
            status = await stub.GetStatus(budget_pb2.GetStatusRequest(scope=crowd.scope(tenant)))
            assert status.total.input_tokens == n, f"{tenant!r} was charged {status.total.input_tokens}, not {n}"
            limited = [u for u in status.limits if u.applies_to != "global"]
            assert bool(limited) == (tenant == star), f"{tenant!r} is bound by the '*' tenant's limit"
            # Each victim's own hold is still theirs to settle.
            if tenant != star:
                await stub.Release(budget_pb2.ReleaseRequest(scope=crowd.scope(tenant), reservation_id=held[tenant]))


# -- policy ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", params("sqlite", "postgres"))
async def test_policies_and_approvals_of_attack_tenants_stay_their_own(tmp_path: Path, backend: str) -> None:
    crowd = Crowd()
    async with serve("policy", backend, tmp_path, crowd.prefix) as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        approvals: dict[str, str] = {}
        rule_of = {tenant: f"deny-{n}" for n, tenant in enumerate(crowd.ids)}
        for n, tenant in enumerate(crowd.ids):
            scope = crowd.scope(tenant)
            rule = policy_pb2.Rule(id=rule_of[tenant], tool=f"tool{n}", decision=policy_pb2.DECISION_DENY)
            await stub.PutPolicy(
                policy_pb2.PutPolicyRequest(
                    scope=scope, policy=policy_pb2.Policy(rules=[rule], fallback=policy_pb2.DECISION_ALLOW)
                )
            )
            asked = await stub.RequestApproval(
                policy_pb2.RequestApprovalRequest(scope=scope, tool_name=f"tool{n}", reason=crowd.secret[tenant])
            )
            approvals[tenant] = asked.approval.approval_id

        for tenant in crowd.ids:
            scope = crowd.scope(tenant)
            policy = await stub.GetPolicy(policy_pb2.GetPolicyRequest(scope=scope))
            assert [r.id for r in policy.policy.rules] == [rule_of[tenant]]
            for m, other in enumerate(crowd.ids):
                checked = await stub.Check(policy_pb2.CheckRequest(scope=scope, tool_name=f"tool{m}"))
                if other == tenant:
                    assert (checked.decision, checked.matched_rule) == (policy_pb2.DECISION_DENY, rule_of[tenant])
                else:
                    assert checked.decision == policy_pb2.DECISION_ALLOW, f"{other!r}'s rule decided for {tenant!r}"

        attacker = crowd.ids[1]
        for victim in crowd.others(attacker):
            for guess in [approvals[victim], *guesses(approvals[victim])]:
                get = policy_pb2.GetApprovalRequest(scope=crowd.scope(attacker), approval_id=guess)
                await expect_not_found(stub.GetApproval(get), f"{attacker} reading {victim}'s approval")
                resolve = policy_pb2.ResolveApprovalRequest(
                    scope=crowd.scope(attacker), approval_id=guess, resolution=policy_pb2.RESOLUTION_APPROVE
                )
                await expect_not_found(stub.ResolveApproval(resolve), f"{attacker} approving {victim}'s approval")
        for tenant in crowd.ids:
            mine = await stub.GetApproval(
                policy_pb2.GetApprovalRequest(scope=crowd.scope(tenant), approval_id=approvals[tenant])
            )
            assert mine.approval.status == policy_pb2.APPROVAL_STATUS_PENDING, "nobody else resolved it"


# -- audit -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", params("file", "postgres"))
async def test_audit_chains_of_attack_tenants_stay_their_own(tmp_path: Path, backend: str) -> None:
    crowd = Crowd()
    async with serve("audit", backend, tmp_path, crowd.prefix) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        for tenant in crowd.ids:
            for step in range(2):
                request = audit_pb2.AppendRequest(scope=crowd.scope(tenant), actor="agent", action=f"step{step}")
                request.payload.update({"secret": crowd.secret[tenant], "query": "' OR '1'='1"})
                await stub.Append(request)

        for tenant in crowd.ids:
            scope = crowd.scope(tenant)
            entries = (await stub.Query(audit_pb2.QueryRequest(scope=scope, limit=1000))).entries
            assert [e.seq for e in entries] == [1, 2], f"{tenant!r} sees {len(entries)} entries"
            assert all(e.scope.user_id == tenant for e in entries)
            text = " ".join(str(e.payload) for e in entries)
            assert crowd.secret[tenant] in text
            assert not crowd.leaked(tenant, text)
            exported = [item.entry async for item in stub.Export(audit_pb2.AuditServiceExportRequest(scope=scope))]
            assert not crowd.leaked(tenant, " ".join(str(e.payload) for e in exported))
            verified = await stub.Verify(audit_pb2.VerifyRequest(scope=scope))
            assert verified.ok
            assert [c.scope.user_id for c in verified.chains] == [tenant]

        for wildcard in crowd.wildcard_tenants():
            await stub.Forget(audit_pb2.AuditServiceForgetRequest(scope=crowd.scope(wildcard)))
        for tenant in crowd.ids:
            entries = (await stub.Query(audit_pb2.QueryRequest(scope=crowd.scope(tenant)))).entries
            written = [e for e in entries if e.seq <= 2]  # a forgotten chain also records the forget itself
            if tenant in crowd.wildcard_tenants():
                assert all(e.payload_shredded for e in written), f"{tenant!r}: its own forget missed an entry"
            else:
                assert not any(e.payload_shredded for e in written), f"{tenant!r}: a wildcard forget shredded it"
                assert all(e.payload["secret"] == crowd.secret[tenant] for e in written)
            assert (await stub.Verify(audit_pb2.VerifyRequest(scope=crowd.scope(tenant)))).ok
