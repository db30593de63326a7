"""``loomflow demo``: the whole suite in one process and a conversation for two tenants.

Everything goes through the public Python client and real tokens: the server runs
in secure mode with a secret generated for this run, alice and bob call the Agent
with their own JWTs, and an operator token administers limits, approvals and audit.
Each claim the demo makes is checked; a failed check exits 1.

The story is a list of sections (:data:`SECTIONS`), each an async function of the
:class:`Demo` (its clients and printer): a new scene is one more function in the list.
With ``--data-dir`` the state and the keys stay in that folder, and the demo prints
the command that verifies its audit log offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from loomflow import suite
from loomflow.audit.keys import parse_signing_key
from loomflow.audit.service import PUBLIC_KEY_FILE, write_public_key
from loomflow.client import (
    Agent,
    ApprovalPending,
    ApprovalResolved,
    AuditClient,
    BudgetClient,
    BudgetExceeded,
    Completed,
    LoomflowError,
    PolicyClient,
    RunResult,
    ToolCallEvent,
    get_run_context,
    limit,
    tool,
)
from loomflow.client import Approval as ClientApproval
from loomflow.kernel import devmode
from loomflow.kernel.auth import AuthSettings, Role, mint_token

MAX_OUTPUT_TOKENS = 64


class Show:
    """Prints the conversation and records whether each claim held."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failed: list[str] = []

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def section(self, title: str) -> None:
        self.line()
        self.line(title)
        self.line("-" * len(title))

    def said(self, user: str, prompt: str, result: RunResult | None = None) -> None:
        self.line(f"  {user:<5} > {prompt}")
        if result is not None:
            for call in result.tool_calls:
                verdict = f"decision={call.decision}, ran={call.executed}"
                self.line(f"        tool {call.tool_name}: {verdict} -> {call.result}")
            for text in result.output.splitlines() or ["(no output)"]:
                self.line(f"        < {text}")
            if result.interrupted:
                self.line(f"        ! interrupted: {result.interruption_reason}")

    def check(self, ok: bool, claim: str) -> None:
        self.line(f"  [{'ok' if ok else 'FAILED'}] {claim}")
        if not ok:
            self.failed.append(claim)


SECRETS_FILE = "demo-secrets.json"
HMAC_KEY_FILE = "audit-hmac-key"


@dataclass(frozen=True)
class Secrets:
    """The run's token secret and audit keys; kept in the data folder when the state is kept."""

    jwt_secret: str
    hmac_key: str
    signing_key: str
    payload_key: str

    @classmethod
    def fresh(cls) -> Secrets:
        return cls(*(secrets.token_hex(32) for _ in range(4)))

    @classmethod
    def kept_in(cls, data_dir: Path) -> Secrets:
        """The folder's secrets (a second run must append to its audit log with the same keys), or new ones."""
        path = data_dir / SECRETS_FILE
        if path.exists():
            return cls(**json.loads(path.read_text()))
        made = cls.fresh()
        data_dir.mkdir(parents=True, exist_ok=True)
        for name, text in ((SECRETS_FILE, json.dumps(made.__dict__)), (HMAC_KEY_FILE, made.hmac_key)):
            descriptor = os.open(data_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(text + "\n")
        return made


def _settings(data_dir: Path, keys: Secrets) -> dict[str, dict[str, Any]]:
    return {
        "": {
            "host": "127.0.0.1",
            "port": 0,
            "metrics_port": 0,
            "data_dir": str(data_dir),
            "insecure": False,
            "tracing": False,
            "shutdown_grace": 1.0,
        },
        "auth": {"jwt_secret": keys.jwt_secret},
        "audit": {"hmac_key": keys.hmac_key, "signing_key": keys.signing_key, "payload_key": keys.payload_key},
        "agent": {"max_output_tokens": MAX_OUTPUT_TOKENS, "approval_timeout_ms": 20_000, "approval_poll_ms": 250},
    }


@dataclass
class Demo:
    """What every section works with: the printer and one client per caller."""

    show: Show
    alice: Agent
    bob: Agent
    policy: PolicyClient
    budget: BudgetClient
    audit: AuditClient
    address: str
    auth: AuthSettings  # mints tokens for clients a section opens itself


Section = Callable[[Demo], Awaitable[None]]


@contextlib.asynccontextmanager
async def _approver(policy: PolicyClient, show: Show) -> AsyncIterator[None]:
    """The operator's approval bot: watches every tenant's pending approvals and approves them."""
    subscribed = asyncio.Event()

    async def watch() -> None:
        stream = policy.watch_approvals(anonymous=True, all_tenants=True, replay_pending=True)
        subscribed.set()
        async for raw in stream:
            approval = ClientApproval.from_proto(raw)
            if approval.status != "pending":
                continue
            await asyncio.sleep(0.2)  # a human takes a moment to read it
            show.line(f"        operator's approver: {approval.tool_name} for user_id={approval.user_id} -> approve")
            await policy.resolve_approval(
                approval.approval_id, True, user_id=approval.user_id, note="approved by the demo operator"
            )

    task = asyncio.create_task(watch())
    await subscribed.wait()
    await asyncio.sleep(0.1)  # the watch reaches the server before any approval is requested
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def memory(demo: Demo) -> None:
    show, alice, bob = demo.show, demo.alice, demo.bob
    show.section("1. Memory is partitioned by user_id")
    told = "My favourite colour is teal."
    show.said("alice", told, await alice.run(told, user_id="alice", session_id="alice-1"))
    told = "My favourite colour is orange."
    show.said("bob", told, await bob.run(told, user_id="bob", session_id="bob-1"))
    question = "What is my favourite colour?"
    asked_alice = await alice.run(question, user_id="alice", session_id="alice-2")
    show.said("alice", question, asked_alice)
    asked_bob = await bob.run(question, user_id="bob", session_id="bob-2")
    show.said("bob", question, asked_bob)
    show.check(
        "teal" in asked_alice.output and "orange" not in asked_alice.output,
        "alice's earlier turn is recalled in her run, bob's never is",
    )
    show.check(
        "orange" in asked_bob.output and "teal" not in asked_bob.output,
        "bob's run recalls only bob's memories, although alice's is just as similar",
    )


async def approval(demo: Demo) -> None:
    show, alice = demo.show, demo.alice
    show.section("2. A destructive tool call needs a human's approval")
    prompt = '/call notes_append {"text": "buy milk"}'
    saved = await alice.run(prompt, user_id="alice")
    show.said("alice", prompt, saved)
    prompt = "/call notes_clear {}"
    show.said("alice", prompt)
    result: RunResult | None = None
    asked = False
    async with _approver(demo.policy, show):
        async for event in alice.stream(prompt, user_id="alice"):
            if isinstance(event, ApprovalPending):
                asked = True
                pending = event.approval
                show.line(
                    f"        policy check: {pending.tool_name} -> ask ({pending.reason or 'a destructive tool'})"
                )
                show.line(
                    f"        approval {pending.approval_id} pending for user_id={pending.user_id}; the run waits"
                )
            elif isinstance(event, ApprovalResolved):
                show.line(f"        approval {event.approval.status} ({event.approval.note})")
            elif isinstance(event, ToolCallEvent):
                call = event.call
                after = " (ask, then approved)" if asked else ""
                show.line(f"        {call.tool_name}: decision={call.decision}{after}, ran={call.executed}")
            elif isinstance(event, Completed):
                result = event.result
    ran = result is not None and bool(result.tool_calls) and result.tool_calls[0].executed
    show.check(asked and ran, "notes_clear asked, reached alice's approval queue, was approved and ran")


async def budget_stop(demo: Demo) -> None:
    show, bob, budget = demo.show, demo.bob, demo.budget
    show.section("3. A budget stop")
    spent = (await budget.get_status(user_id="bob")).total.output_tokens
    allowed = spent + MAX_OUTPUT_TOKENS
    await budget.set_limits([limit("output_tokens", allowed)], target="user", user_id="bob")
    reserve = MAX_OUTPUT_TOKENS
    show.line(f"  operator: bob's limit on output_tokens, no window = {allowed}")
    show.line(f"    he has used {spent} in part 1; each model turn first reserves {reserve} output tokens (the")
    show.line(f"    most it may write), then commits what it wrote: {spent} + {reserve} = {allowed}, one turn fits")
    prompt = "/call current_time {}"
    stopped = await bob.run(prompt, user_id="bob")
    show.said("bob", prompt, stopped)
    committed = (await budget.get_status(user_id="bob")).total.output_tokens
    show.line(f"  why: turn 1 reserved {reserve} ({spent} + {reserve} = {allowed} fits), wrote the tool call")
    show.line(
        f"       with {committed - spent} output tokens and committed those: bob's ledger {spent} -> {committed};"
    )
    show.line(f"       turn 2 (the answer with the tool's result) would reserve {reserve} more:")
    show.line(f"       {committed} + {reserve} = {committed + reserve} > {allowed}, so the run stops before it")
    show.check(
        stopped.interrupted and stopped.interruption_reason.startswith("budget"),
        "the run stopped when its next turn no longer fitted bob's budget",
    )
    prompt = "Are you still there?"
    show.said("bob", prompt)
    try:
        await bob.run(prompt, user_id="bob")
        refused = False
    except BudgetExceeded as error:
        show.line(f"        ! BudgetExceeded: {error.message}")
        refused = True
    status = await budget.get_status(user_id="bob")
    show.check(
        refused and status.total.output_tokens <= allowed,
        f"the next run is refused up front; bob's ledger ({status.total.output_tokens}) never passed the limit",
    )


async def audit_log(demo: Demo) -> None:
    show, audit = demo.show, demo.audit
    show.section("4. The audit log verifies")
    await audit.get_checkpoint(anonymous=True, create=True)
    verified = await audit.verify(anonymous=True, all_tenants=True)
    for chain in verified.chains:
        who = chain.scope.user_id or "anonymous"
        state = "intact" if chain.ok else f"BROKEN at seq {chain.first_bad_seq}: {chain.reason}"
        show.line(f"  user_id={who:<6} {chain.entries_checked:>3} entries, HMAC chain {state}")
    show.line(f"  checked against signed checkpoint {verified.checkpoint_id}")
    show.check(verified.ok and len(verified.chains) >= 2, "Verify ok: every tenant's chain and the checkpoint hold")


@tool
async def lookup_order(order_id: str) -> str:
    """Looks an order up by its id (runs in the caller's process, not in the Agent)."""
    return f"order {order_id} of {get_run_context().user_id}: shipped"


async def conversation(demo: Demo) -> None:
    show, budget = demo.show, demo.budget
    show.section("5. Conversations continue, and a tool the caller runs")
    await budget.set_limits([limit("output_tokens", 1_000_000)], target="user", user_id="bob")
    show.line("  operator: bob's output_tokens limit raised again")
    session = f"trip-{secrets.token_hex(3)}"  # a new conversation each run, also on a kept --data-dir
    for user, city in (("alice", "Lisbon"), ("bob", "Oslo")):
        async with Agent(demo.address, token=mint_token(demo.auth, user), tools=[lookup_order]) as agent:
            first = await agent.run(f"I'm flying to {city} tomorrow.", user_id=user, session_id=session)
            prompt = "Which city did I just mention?"
            second = await agent.run(prompt, user_id=user, session_id=session)
            show.said(user, prompt, second)
            show.line(
                f"        history given to the model: {list(second.history_episode_ids)} (run {first.run_id[:8]})"
            )
            show.check(len(second.history_episode_ids) == 1, f"{user}'s second turn is given the first as history")
            prompt = '/call lookup_order {"order_id": "A-1"}'
            ordered = await agent.run(prompt, user_id=user, session_id=session)
            show.said(user, prompt, ordered)
            show.check(
                f"order A-1 of {user}: shipped" in ordered.output,
                f"lookup_order was gated, paused the run, ran in {user}'s client and its result reached the model",
            )


SECTIONS: list[Section] = [memory, approval, budget_stop, audit_log, conversation]


def offline_verify_command(data_dir: Path) -> str:
    """The command an auditor runs on the kept folder, with the server gone."""
    folder = data_dir / "audit"
    return (
        f'LOOMFLOW_AUDIT_HMAC_KEY="$(cat {data_dir / HMAC_KEY_FILE})" {devmode.program()} audit verify {folder} '
        f"--public-key {folder / PUBLIC_KEY_FILE}"
    )


async def run_demo(keep: bool = False, out: TextIO = sys.stdout, data_dir: Path | None = None) -> int:
    """Runs every section; ``data_dir`` (kept, reused by later runs) or a temporary folder (``keep``: not deleted)."""
    logging.getLogger("loomflow").setLevel(logging.ERROR)  # the demo's own lines tell the story
    kept = keep or data_dir is not None
    folder = data_dir if data_dir is not None else Path(tempfile.mkdtemp(prefix="loomflow-demo-"))
    keys = Secrets.kept_in(folder) if kept else Secrets.fresh()
    auth = AuthSettings(jwt_secret=keys.jwt_secret)
    show = Show(out)
    server = suite.build_server(env={}, overrides=_settings(folder, keys))
    try:
        port = await server.start()
        address = f"127.0.0.1:{port}"
        show.line(f"loomflow demo: memory, budget, policy, audit and agent in one process on {address}")
        show.line(f"secure mode (tokens signed with a fresh secret), echo model, state in {folder}")
        operator = mint_token(auth, "demo-operator", Role.OPERATOR)
        async with (
            Agent(address, token=mint_token(auth, "alice")) as alice,
            Agent(address, token=mint_token(auth, "bob")) as bob,
            PolicyClient(address, token=operator) as policy,
            BudgetClient(address, token=operator) as budget,
            AuditClient(address, token=operator) as audit,
        ):
            demo = Demo(show, alice, bob, policy, budget, audit, address, auth)
            for section in SECTIONS:
                await section(demo)
    except LoomflowError as error:
        show.line(f"demo failed: {error}")
        return 1
    finally:
        await server.stop(0.5)
        if kept:
            write_public_key(folder / "audit", parse_signing_key(keys.signing_key))
            show.line()
            show.line(f"state and keys kept in {folder}; verify its audit log offline with:")
            show.line(f"  {offline_verify_command(folder)}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    show.line()
    if show.failed:
        show.line(f"demo FAILED: {len(show.failed)} claim(s) did not hold")
        return 1
    show.line("demo ok: every claim held")
    return 0
