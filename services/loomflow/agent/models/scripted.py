"""A model that plays back a script: for tests of the turn loop, tools and failures.

A script is a list of cases; the first whose ``when`` is a substring of the
prompt (or that has no ``when``) plays its turns, one per model call of the run.
A turn has text, tool calls, optional usage (else counted like echo), a delay,
or an error to raise (``{"error": 429}`` is transient, ``{"error": 400}`` is not).
A turn may answer from what the model was given: ``from_history`` (a regular
expression searched in the session's earlier messages, oldest first) or
``from_system`` (searched in the system context: blocks, facts, memories); the
turn's text is then formatted with the match's groups (``{0}``, ``{1}``, ...), or
is ``"I don't know."`` when nothing matches. ``"list_tools": true`` answers with the
names of the tools on offer.
Load it from JSON with ``LOOMFLOW_AGENT_SCRIPT_FILE``::

    [{"when": "clean up", "turns": [
        {"tool_calls": [{"name": "notes_clear", "arguments": {}}]},
        {"text": "done"}]}]
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loomflow.agent.models.base import (
    ModelError,
    ModelRequest,
    ModelResponse,
    ModelUsage,
    TextSink,
    ToolCall,
    count_tokens,
    is_transient_status,
)
from loomflow.agent.models.echo import request_tokens


@dataclass(frozen=True)
class ScriptedTurn:
    text: str = ""
    tool_calls: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    usage: ModelUsage | None = None
    delay_s: float = 0.0
    error_status: int | None = None
    chunks: tuple[str, ...] = ()
    """Stream the text in these pieces (default: one piece)."""
    from_history: str = ""
    from_system: str = ""
    list_tools: bool = False
    """Answer with the names of the tools on offer, comma-separated (sorted)."""

    def answer(self, request: ModelRequest) -> str:
        """The turn's text, filled in from the request when the turn answers from what it was given."""
        if self.list_tools:
            return ",".join(sorted(t.name for t in request.tools))
        if not self.from_history and not self.from_system:
            return self.text
        if self.from_history:
            found = _search(self.from_history, [m.content for m in request.history])
        else:
            found = _search(self.from_system, [request.system_text()])
        return UNKNOWN if found is None else self.text.format(*found.groups(), found.group(0))


UNKNOWN = "I don't know."


def _search(pattern: str, texts: Sequence[str]) -> re.Match[str] | None:
    for text in texts:
        found = re.search(pattern, text)
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class ScriptCase:
    turns: tuple[ScriptedTurn, ...]
    when: str = ""


@dataclass
class ScriptedModel:
    cases: Sequence[ScriptCase]
    name: str = "scripted"
    remote: bool = False
    """True: scripted delays stand for a provider's wait, and the run lends its slot for them."""
    calls: list[ModelRequest] = field(default_factory=list)
    """Every request received, for assertions."""
    _failures: dict[tuple[str, int], int] = field(default_factory=dict)

    def estimate_tokens(self, text: str) -> int:
        return count_tokens(text)

    def _case(self, prompt: str) -> ScriptCase:
        for case in self.cases:
            if not case.when or case.when in prompt:
                return case
        raise ModelError(f"the script has no case for prompt {prompt[:60]!r}", transient=False, status=400)

    async def complete(self, request: ModelRequest, on_text: TextSink | None = None) -> ModelResponse:
        self.calls.append(request)
        prompt = request.prompt()
        case = self._case(prompt)
        index = sum(1 for m in request.messages if m.role == "assistant")
        if index >= len(case.turns):
            raise ModelError("the script has no more turns", transient=False, status=400)
        turn = case.turns[index]
        if turn.delay_s:
            await asyncio.sleep(turn.delay_s)
        if turn.error_status is not None:
            # A transient error fails once per (prompt, turn), so the retry succeeds.
            key = (prompt, index)
            if not is_transient_status(turn.error_status) or self._failures.get(key, 0) == 0:
                self._failures[key] = self._failures.get(key, 0) + 1
                raise ModelError(
                    f"scripted error {turn.error_status}",
                    transient=is_transient_status(turn.error_status),
                    status=turn.error_status,
                )
        calls = [ToolCall(f"call-{index}-{i}", name, dict(args)) for i, (name, args) in enumerate(turn.tool_calls)]
        text = turn.answer(request)
        if on_text is not None:
            for chunk in turn.chunks or ((text,) if text else ()):
                on_text(chunk)
        usage = turn.usage or ModelUsage(
            input_tokens=request_tokens(request),
            output_tokens=count_tokens(text) + sum(count_tokens(json.dumps(c.arguments)) for c in calls),
        )
        return ModelResponse(text, calls, usage, "tool_use" if calls else "end_turn")


def _turn(raw: Mapping[str, Any]) -> ScriptedTurn:
    usage = raw.get("usage")
    return ScriptedTurn(
        text=str(raw.get("text", "")),
        tool_calls=tuple((str(c["name"]), dict(c.get("arguments", {}))) for c in raw.get("tool_calls", ())),
        usage=ModelUsage(**usage) if usage else None,
        delay_s=float(raw.get("delay_ms", 0)) / 1000.0,
        error_status=int(raw["error"]) if "error" in raw else None,
        chunks=tuple(str(c) for c in raw.get("chunks", ())),
        from_history=str(raw.get("from_history", "")),
        from_system=str(raw.get("from_system", "")),
        list_tools=bool(raw.get("list_tools", False)),
    )


def load_script(path: str | Path) -> ScriptedModel:
    raw = json.loads(Path(path).read_text())
    if not isinstance(raw, list):
        raise ValueError(f"{path}: a script is a JSON list of cases")
    cases = [ScriptCase(tuple(_turn(t) for t in case["turns"]), str(case.get("when", ""))) for case in raw]
    return ScriptedModel(cases)
