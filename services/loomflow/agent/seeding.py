"""What a run knows before its first model call, besides its memories: the session, blocks and facts.

Like the in-process framework it replaces, every run is seeded with

- the user's working blocks (tenant-wide ones and this session's) in the
  system context, under ``block_tokens``;
- the current facts that share a word with the prompt, in the system context,
  under ``fact_tokens``;
- this session's newest turns as conversation messages, oldest first: as many
  of the newest ``history_turns`` as fit in ``history_tokens``.

All of it, and the recalled episodes, come from one Memory call (GetContext), made
concurrently with the first budget reservation. History is its ListEpisodes page of
``history_turns``, so a run in a session of 10,000 turns reads as many rows as one in
a session of 20 (``bench/agent_turn.py``). Everything here is scoped by the run's
UserScope: another tenant's session with the same id is another session.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from loomflow.agent.dependencies import Dependencies, dependency_error
from loomflow.agent.models.base import Message, truncate_tokens
from loomflow.v1 import memory_pb2, tenancy_pb2

TokenCounter = Callable[[str], int]

_WORD = re.compile(r"\w+")
_MAX_QUERY_CHARS = 65536  # GetContextRequest.recall_query
_MAX_PAGE = 1000  # GetContextRequest's page sizes


@dataclass(frozen=True)
class SeedLimits:
    """How much of each kind of context a run gets (0 turns or tokens: none of that kind)."""

    history_turns: int = 20
    history_tokens: int = 2048
    block_tokens: int = 512
    fact_tokens: int = 256
    fact_candidates: int = 100
    """Current facts read per run to choose the matching ones from."""
    block_candidates: int = 100
    """Working blocks read per run at most (tenant-wide first, then the session's)."""

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


def context_request(
    scope: tenancy_pb2.UserScope, session_id: str, prompt: str, limits: SeedLimits, recall_limit: int
) -> memory_pb2.GetContextRequest | None:
    """The one Memory call a run makes before its first model call: recall for the prompt (episodes of
    other sessions: this session's turns come as history), the session's newest page, the blocks and
    the current facts, each only when enabled (None: the run needs nothing from Memory)."""
    history = bool(session_id) and limits.history_turns > 0 and limits.history_tokens > 0
    request = memory_pb2.GetContextRequest(
        scope=scope,
        session_id=session_id,
        recall_query=prompt[:_MAX_QUERY_CHARS] if recall_limit > 0 else "",
        recall_limit=max(0, recall_limit),
        recall_exclude_session_id=session_id,
        history_page_size=limits.history_turns if history else 0,
        blocks_page_size=limits.block_candidates if limits.block_tokens > 0 else 0,
        facts_page_size=min(_MAX_PAGE, max(1, limits.fact_candidates)) if limits.fact_tokens > 0 else 0,
    )
    parts = (request.recall_limit, request.history_page_size, request.blocks_page_size, request.facts_page_size)
    return request if any(parts) else None


async def read_context(
    deps: Dependencies, request: memory_pb2.GetContextRequest | None, deadline: float
) -> memory_pb2.GetContextResponse:
    """Memory's answer to :func:`context_request` (an empty one when there is nothing to ask)."""
    if request is None:
        return memory_pb2.GetContextResponse()
    try:
        reply: memory_pb2.GetContextResponse = await deps.memory.GetContext(
            request, metadata=deps.metadata, timeout=deps.timeout(deadline)
        )
    except grpc.aio.AioRpcError as error:
        raise dependency_error("memory", error) from None
    return reply


def seed_from(context: memory_pb2.GetContextResponse, prompt: str, limits: SeedLimits, count: TokenCounter) -> Seed:
    """What of Memory's answer the run is seeded with, within each kind's token budget."""
    messages, ids = history_messages(context.history, count, limits.history_tokens)
    return Seed(
        history=messages,
        history_episode_ids=ids,
        blocks=block_context(context.blocks, count, limits.block_tokens),
        facts=fact_context(context.facts, prompt, count, limits.fact_tokens),
    )


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


def block_context(found: Sequence[memory_pb2.Block], count: TokenCounter, budget: int) -> list[tuple[str, str]]:
    """The blocks Memory gave (tenant-wide, then this session's), each cut to what is left of ``budget``."""
    context: list[tuple[str, str]] = []
    room = budget
    for block in found:
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
