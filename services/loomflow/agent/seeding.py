"""What a run knows before its first model call, besides recall: the session, blocks and facts.

Like the in-process framework it replaces, every run is seeded with

- the user's working blocks (tenant-wide ones and this session's) in the
  system context, under ``block_tokens``;
- the current facts that share a word with the prompt, in the system context,
  under ``fact_tokens``;
- this session's newest turns as conversation messages, oldest first: as many
  of the newest ``history_turns`` as fit in ``history_tokens``.

History comes from Memory's ListEpisodes with a page size of ``history_turns``,
so a run in a session of 10,000 turns reads as many rows as one in a session of
20 (``bench/agent_turn.py``). Everything here is scoped by the run's UserScope:
another tenant's session with the same id is another session.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from loomflow.agent.dependencies import Dependencies, dependency_error
from loomflow.agent.models.base import Message, truncate_tokens
from loomflow.v1 import memory_pb2, tenancy_pb2

T = TypeVar("T")

TokenCounter = Callable[[str], int]

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class SeedLimits:
    """How much of each kind of context a run gets (0 turns or tokens: none of that kind)."""

    history_turns: int = 20
    history_tokens: int = 2048
    block_tokens: int = 512
    fact_tokens: int = 256
    fact_candidates: int = 100
    """Current facts read per run to choose the matching ones from."""

    def reserved_tokens(self, session_id: str) -> int:
        """The most input tokens the seed can add (what the first reservation must hold)."""
        history = self.history_tokens if session_id and self.history_turns > 0 else 0
        return history + max(0, self.block_tokens) + max(0, self.fact_tokens)


@dataclass
class Seed:
    history: list[Message]
    history_episode_ids: list[str]
    blocks: list[tuple[str, str]]
    facts: list[str]


async def read_seed(
    deps: Dependencies,
    scope: tenancy_pb2.UserScope,
    session_id: str,
    prompt: str,
    limits: SeedLimits,
    count: TokenCounter,
    deadline: float,
) -> Seed:
    """Reads the session's newest turns, the blocks and the current facts concurrently (only those enabled)."""
    memory, metadata, timeout = deps.memory, deps.metadata, deps.timeout(deadline)
    history = history_request(scope, session_id, limits)
    calls: list[Awaitable[Any]] = [
        _answer(memory.ListEpisodes(history, metadata=metadata, timeout=timeout)) if history else _none(),
        _answer(memory.ListBlocks(memory_pb2.ListBlocksRequest(scope=scope), metadata=metadata, timeout=timeout))
        if limits.block_tokens > 0
        else _none(),
        _answer(
            memory.QueryFacts(
                memory_pb2.QueryFactsRequest(scope=scope, limit=max(1, limits.fact_candidates)),
                metadata=metadata,
                timeout=timeout,
            )
        )
        if limits.fact_tokens > 0
        else _none(),
    ]
    listed, blocks, facts = await asyncio.gather(*calls)
    messages, ids = history_messages(listed.episodes, count, limits.history_tokens) if listed else ([], [])
    return Seed(
        history=messages,
        history_episode_ids=ids,
        blocks=block_context(blocks.blocks, session_id, count, limits.block_tokens) if blocks else [],
        facts=fact_context(facts.facts, prompt, count, limits.fact_tokens) if facts else [],
    )


async def _answer(call: Awaitable[T]) -> T:
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        raise dependency_error("memory", error) from None


async def _none() -> None:
    return None


def history_request(
    scope: tenancy_pb2.UserScope, session_id: str, limits: SeedLimits
) -> memory_pb2.ListEpisodesRequest | None:
    """The one ListEpisodes page a run reads (None when the run has no session or history is off)."""
    if not session_id or limits.history_turns <= 0 or limits.history_tokens <= 0:
        return None
    return memory_pb2.ListEpisodesRequest(scope=scope, session_id=session_id, page_size=limits.history_turns)


def history_messages(
    newest_first: Sequence[memory_pb2.Episode], count: TokenCounter, budget: int
) -> tuple[list[Message], list[str]]:
    """The newest turns that fit in ``budget`` tokens, as (user, assistant) messages oldest first.

    A turn is kept whole or not at all, and the walk stops at the first that does
    not fit: a conversation with a hole in the middle would mislead the model.
    A turn without an answer (an interrupted run) is skipped: providers need
    user and assistant messages to alternate.
    """
    kept: list[memory_pb2.Episode] = []
    room = budget
    for episode in newest_first:
        if not episode.output:
            continue
        tokens = count(episode.input) + count(episode.output)
        if tokens > room:
            break
        room -= tokens
        kept.append(episode)
    kept.reverse()
    messages: list[Message] = []
    for episode in kept:
        messages += [Message("user", episode.input), Message("assistant", episode.output)]
    return messages, [e.id for e in kept]


def block_context(
    found: Sequence[memory_pb2.Block], session_id: str, count: TokenCounter, budget: int
) -> list[tuple[str, str]]:
    """Tenant-wide blocks, then this session's, each cut to what is left of ``budget``."""
    chosen = [b for b in found if not b.session_id] + [b for b in found if session_id and b.session_id == session_id]
    context: list[tuple[str, str]] = []
    room = budget
    for block in chosen:
        if not block.content.strip():
            continue
        cost = count(block.label) + 2  # the "[label]" line
        if cost >= room:
            break
        content = block.content
        tokens = count(content)
        if cost + tokens > room:
            content = truncate_tokens(content, room - cost)
            tokens = count(content)
        room -= cost + tokens
        context.append((block.label, content))
    return context


def fact_line(fact: memory_pb2.Fact) -> str:
    return f"{fact.subject} {fact.predicate} {fact.object}"


def fact_context(found: Sequence[memory_pb2.Fact], prompt: str, count: TokenCounter, budget: int) -> list[str]:
    """Current facts sharing words with the prompt, most shared first, within ``budget`` tokens."""
    words = {w.lower() for w in _WORD.findall(prompt)}
    scored: list[tuple[int, int, str]] = []
    for position, fact in enumerate(found):
        line = fact_line(fact)
        shared = len(words & {w.lower() for w in _WORD.findall(line)})
        if shared:
            scored.append((-shared, position, line))
    lines: list[str] = []
    room = budget
    for _, _, line in sorted(scored):
        tokens = count(line) + 1  # the "-" it is listed with
        if tokens > room:
            continue
        room -= tokens
        lines.append(line)
    return lines
