"""Which recalled episodes a run keeps as context (seeding.py reads them), and the episode it writes back."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from loomflow.agent.dependencies import Dependencies, dependency_error
from loomflow.agent.models.base import MEMORIES_HEADER, Model
from loomflow.agent.run.limits import RunLimits
from loomflow.v1 import agent_pb2, memory_pb2, tenancy_pb2

_MAX_EPISODE_CHARS = 1048576


def memory_text(episode: memory_pb2.Episode) -> str:
    """One recalled episode on one line: what the user said, and the answer when it adds something."""
    said = " ".join(episode.input.split())
    answered = " ".join(episode.output.split())
    return said if not answered or answered == said else f"{said} → {answered}"


def memory_tokens(model: Model, text: str) -> int:
    """A memory line as the model reads it, its ``- `` prefix included."""
    return model.estimate_tokens("- ") + model.estimate_tokens(text)


def select_memories(
    hits: Sequence[memory_pb2.RecallHit], embedder_threshold: float, limits: RunLimits, model: Model
) -> list[tuple[str, str]]:
    """Relevant recalled episodes as (episode id, line), within ``context_tokens`` (so the reservation holds).

    Recall ranks every episode of the tenant; a hit sharing no word with the
    prompt and barely similar to it is noise, not memory, and is left out.
    """
    # The header and each line's prefix are part of what the model reads, so part of the room.
    room = limits.context_tokens - model.estimate_tokens(MEMORIES_HEADER)
    threshold = limits.recall_min_similarity
    if threshold < 0:  # each embedder's cosines have their own scale: Memory says where noise starts
        threshold = embedder_threshold
    kept: list[tuple[str, str]] = []
    for hit in hits:
        if hit.lexical_score <= 0 and hit.vector_score < threshold:
            continue
        text = memory_text(hit.episode)
        tokens = memory_tokens(model, text)
        if tokens > room:
            continue
        room -= tokens
        kept.append((hit.episode.id, text))
    return kept


async def remember(
    deps: Dependencies,
    scope: tenancy_pb2.UserScope,
    options: agent_pb2.RunOptions,
    run_id: str,
    output: str,
    deadline: float,
) -> None:
    """The run as one episode: the prompt, the answer, the caller's metadata."""
    request = memory_pb2.RememberRequest(
        scope=scope,
        session_id=options.session_id,
        input=options.prompt,
        output=output[:_MAX_EPISODE_CHARS],
        metadata=options.metadata,
        run_id=run_id,
    )
    try:
        await deps.memory.Remember(request, metadata=deps.metadata, timeout=deps.timeout(deadline))
    except grpc.aio.AioRpcError as error:
        raise dependency_error("memory", error) from None
