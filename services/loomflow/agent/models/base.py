"""What every model adapter speaks: a provider-neutral request, response and error.

The runner builds a :class:`ModelRequest` (system text, recalled memories,
the conversation so far, the tools on offer) and gets back text, tool calls
and the usage the provider reported. Adapters translate to and from their
provider's wire format and raise :class:`ModelError`, marking which failures
are worth retrying (rate limits, overload, 5xx, dropped connections).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from loomflow.agent.tools.registry import ToolSpec

TextSink = Callable[[str], None]
"""Receives each chunk of model text as it streams."""

_TOKEN = re.compile(r"\w+|[^\w\s]")


_counted: dict[str, int] = {}
_CACHED_CHARS = 2048
_CACHED_ENTRIES = 50_000


def count_tokens(text: str) -> int:
    """A deterministic token count: words and punctuation marks (the echo model's tokenizer).

    Short texts that come back (the system prompt, a tenant's recalled episodes,
    tool names) are counted once: hashing a string is far cheaper than scanning it.
    """
    if len(text) > _CACHED_CHARS:
        return len(_TOKEN.findall(text))
    count = _counted.get(text)
    if count is None:
        if len(_counted) >= _CACHED_ENTRIES:
            _counted.clear()
        count = _counted[text] = len(_TOKEN.findall(text))
    return count


def truncate_tokens(text: str, limit: int) -> str:
    """``text`` cut after its first ``limit`` tokens (as :func:`count_tokens` counts them)."""
    if limit <= 0:
        return ""
    for index, match in enumerate(_TOKEN.finditer(text)):
        if index == limit:
            return text[: match.start()].rstrip()
    return text


def tools_text(tools: Sequence[ToolSpec]) -> str:
    """The tool definitions as a model reads them (they count as input tokens, as providers count them)."""
    if not tools:
        return ""
    return json.dumps([{"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in tools])


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Message:
    """One message of the conversation: the user's prompt, the model's turn, or a tool's result."""

    role: Literal["user", "assistant", "tool"]
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    tool_name: str = ""
    is_error: bool = False


MEMORIES_HEADER = "What you remember from earlier conversations with this user:"
BLOCKS_HEADER = "Your working memory about this user:"
FACTS_HEADER = "Facts about this user that hold now:"


def seed_text(blocks: Sequence[tuple[str, str]], facts: Sequence[str]) -> str:
    """The working blocks and facts as the system context shows them (empty when there are none)."""
    parts: list[str] = []
    if blocks:
        parts.append(BLOCKS_HEADER + "\n" + "\n".join(f"[{label}]\n{content}" for label, content in blocks))
    if facts:
        parts.append(FACTS_HEADER + "\n" + "\n".join(f"- {fact}" for fact in facts))
    return "\n\n".join(parts)


@dataclass(frozen=True)
class ModelRequest:
    system: str
    messages: Sequence[Message]
    """This run's conversation: the prompt first, then the model's turns and tool results."""
    tools: Sequence[ToolSpec] = ()
    max_output_tokens: int = 1024
    memories: Sequence[str] = ()
    """Recalled episodes of this tenant's other sessions, as text; rendered into the system prompt."""
    history: Sequence[Message] = ()
    """Earlier turns of this session, oldest first (user, assistant, ...); sent before ``messages``."""
    blocks: Sequence[tuple[str, str]] = ()
    """The tenant's working blocks (label, content); rendered into the system prompt."""
    facts: Sequence[str] = ()
    """Current facts that match the prompt, one line each; rendered into the system prompt."""

    def system_text(self) -> str:
        parts = [self.system]
        seeded = seed_text(self.blocks, self.facts)
        if seeded:
            parts.append(seeded)
        if self.memories:
            parts.append(MEMORIES_HEADER + "\n" + "\n".join(f"- {m}" for m in self.memories))
        return "\n\n".join(parts).strip()

    def conversation(self) -> list[Message]:
        """What a provider receives as messages: the session's history, then this run's conversation."""
        return [*self.history, *self.messages]

    def prompt(self) -> str:
        """The user's prompt: the first user message."""
        return next((m.content for m in self.messages if m.role == "user"), "")


@dataclass(frozen=True)
class ModelUsage:
    input_tokens: int = 0
    """All input tokens, including those read from or written to the provider's prompt cache."""
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass
class ModelResponse:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: ModelUsage = field(default_factory=ModelUsage)
    stop_reason: str = ""


class ModelError(Exception):
    """A model call failed. ``transient`` ones (429, 5xx, connection) are retried with backoff."""

    def __init__(
        self, message: str, *, transient: bool, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.retry_after_s = retry_after_s


class Model(Protocol):
    @property
    def name(self) -> str:
        """The model id, as priced by the budget's price table."""
        ...

    @property
    def remote(self) -> bool:
        """True when a turn is mostly waiting on another machine (a provider's HTTP API): the run lends
        its run slot for that wait (see agent/run/slots.py); False for models computing in this process."""
        ...

    def estimate_tokens(self, text: str) -> int:
        """An upper estimate of ``text``'s input tokens, for the budget reservation."""
        ...

    async def complete(self, request: ModelRequest, on_text: TextSink | None = None) -> ModelResponse:
        """One model turn; streams text chunks to ``on_text`` when given."""
        ...


def is_transient_status(status: int) -> bool:
    """Rate limits, overload (Anthropic's 529) and server errors are worth retrying."""
    return status in (408, 409, 429) or status >= 500


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def http_error(provider: str, status: int, message: str, retry_after: str | None = None) -> ModelError:
    """A provider's HTTP error answer as a ModelError: retried when :func:`is_transient_status` says
    so, after the provider's ``Retry-After`` when it sent one."""
    return ModelError(
        f"{provider}: HTTP {status}: {message}",
        transient=is_transient_status(status),
        status=status,
        retry_after_s=parse_retry_after(retry_after),
    )
