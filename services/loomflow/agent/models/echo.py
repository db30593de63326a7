"""The zero-key default model: it echoes the prompt and counts tokens deterministically.

It needs no provider, so ``loomflow serve`` works out of the box, and its
usage is exact and reproducible, so budgets can be checked to the token.

Beyond echoing, it can call tools, which makes the whole turn (policy,
approvals, tools, audit) reachable without a model key: each prompt line of the
form ``/call <tool> {json arguments}`` becomes a tool call on the first turn,
and the next turn echoes the prompt's other lines followed by the tool results.
Recalled memories are appended as ``[recalled] …`` lines, so what the agent
remembered is visible in its answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from loomflow.agent.models.base import (
    MEMORIES_HEADER,
    ModelRequest,
    ModelResponse,
    ModelUsage,
    TextSink,
    ToolCall,
    count_tokens,
    seed_text,
    tools_text,
    truncate_tokens,
)
from loomflow.kernel.errors import InvalidArgument
from loomflow.kernel.jsondepth import MAX_JSON_DEPTH, depth_limit_message, json_depth
from loomflow.kernel.validation import DEPTH_RULE

_DIRECTIVE = re.compile(r"^/call\s+([A-Za-z0-9_-]{1,64})\s*(\{.*\})?\s*$")


def parse_directives(prompt: str) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """The ``/call`` lines of a prompt (tool name and arguments) and the prompt without them."""
    if "/call" not in prompt:  # the common case costs one substring scan
        return [], prompt
    calls: list[tuple[str, dict[str, Any]]] = []
    kept: list[str] = []
    for line in prompt.splitlines():
        match = _DIRECTIVE.match(line.strip())
        if match is None:
            kept.append(line)
            continue
        try:
            arguments = json.loads(match.group(2)) if match.group(2) else {}
        except json.JSONDecodeError:
            kept.append(line)
            continue
        except RecursionError:  # deeper than Python's parser goes: far past the limit below
            arguments = None
        # The caller wrote these arguments: nesting past the limit is a bad request, not a tool error.
        depth = json_depth(arguments) if arguments is not None else MAX_JSON_DEPTH + 1
        if depth > MAX_JSON_DEPTH:
            raise InvalidArgument.field(
                "options.prompt", f"/call {match.group(1)}: arguments {depth_limit_message(depth)}", reason=DEPTH_RULE
            )
        if isinstance(arguments, dict):
            calls.append((match.group(1), arguments))
        else:
            kept.append(line)
    return calls, "\n".join(kept).strip()


_tool_tokens: dict[tuple[str, ...], int] = {}


def _tools_tokens(request: ModelRequest) -> int:
    if not request.tools:
        return 0
    key = tuple(t.name for t in request.tools)
    count = _tool_tokens.get(key)
    if count is None:  # the same few tool sets come back on every turn: count each once
        count = _tool_tokens[key] = count_tokens(tools_text(request.tools))
    return count


def request_tokens(request: ModelRequest) -> int:
    """Input tokens of a request as the echo model counts them: system, memories, tools and messages.

    Counted part by part (each part's count is cached), which equals counting
    ``request.system_text()`` whole: the joins add only the "-" of each memory line.
    """
    total = count_tokens(request.system) + _tools_tokens(request)
    if request.blocks or request.facts:
        total += count_tokens(seed_text(request.blocks, request.facts))
    if request.memories:
        total += count_tokens(MEMORIES_HEADER) + sum(1 + count_tokens(m) for m in request.memories)
    for message in (*request.history, *request.messages):
        total += count_tokens(message.content)
        for call in message.tool_calls:
            total += count_tokens(call.name) + count_tokens(json.dumps(call.arguments, sort_keys=True))
    return total


class EchoModel:
    name = "echo"
    remote = False  # computed in this process: the run keeps its slot

    def estimate_tokens(self, text: str) -> int:
        return count_tokens(text)

    async def complete(self, request: ModelRequest, on_text: TextSink | None = None) -> ModelResponse:
        calls, text = parse_directives(request.prompt())
        tool_results = [m for m in request.messages if m.role == "tool"]
        tool_calls: list[ToolCall] = []
        if calls and not tool_results:
            turn = sum(1 for m in request.messages if m.role == "assistant")
            tool_calls = [ToolCall(f"echo-{turn}-{i}", name, args) for i, (name, args) in enumerate(calls)]
            text = ""
            output_tokens = sum(
                count_tokens(c.name) + count_tokens(json.dumps(c.arguments, sort_keys=True)) for c in tool_calls
            )
        else:
            lines = [text] if text else []
            lines.extend(f"[{m.tool_name}] {m.content}" for m in tool_results)
            lines.extend(f"[recalled] {memory}" for memory in request.memories)
            # Line by line, from cached parts: brackets, spaces and newlines never merge two tokens.
            output_tokens = (
                count_tokens(text)
                + sum(2 + count_tokens(m.tool_name) + count_tokens(m.content) for m in tool_results)
                + sum(3 + count_tokens(memory) for memory in request.memories)
            )
            text = "\n".join(lines)
            if output_tokens > request.max_output_tokens:
                text = truncate_tokens(text, request.max_output_tokens)
                output_tokens = count_tokens(text)
        if on_text is not None and text:
            on_text(text)
        return ModelResponse(
            text=text,
            tool_calls=tool_calls,
            usage=ModelUsage(input_tokens=request_tokens(request), output_tokens=output_tokens),
            stop_reason="tool_use" if tool_calls else "end_turn",
        )
