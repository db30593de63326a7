"""Anthropic Messages API adapter (the ``anthropic`` SDK), streaming and not.

Usage: Anthropic reports ``input_tokens`` *excluding* prompt-cache reads and
writes; the ledger's ``input_tokens`` includes them, so the three are summed,
and the cached parts are passed on so the price table can discount them.
The SDK's own retries are off: the runner retries within the run's deadline.
"""

from __future__ import annotations

import json
import math
from typing import Any

import anthropic

from loomflow.agent.models.base import (
    Message,
    ModelError,
    ModelRequest,
    ModelResponse,
    ModelUsage,
    TextSink,
    ToolCall,
    http_error,
)


def to_anthropic_messages(messages: list[Message] | tuple[Message, ...] | Any) -> list[dict[str, Any]]:
    """Our conversation in Anthropic's shape: tool results are user-role ``tool_result`` blocks."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "user":
            out.append({"role": "user", "content": m.content})
        elif m.role == "assistant":
            blocks: list[dict[str, Any]] = []
            if m.content:
                blocks.append({"type": "text", "text": m.content})
            blocks.extend({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in m.tool_calls)
            out.append({"role": "assistant", "content": blocks})
        else:
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content, "is_error": m.is_error}
            previous = out[-1] if out else None
            # Consecutive results answer one assistant turn: they share one user message.
            if previous is not None and previous["role"] == "user" and isinstance(previous["content"], list):
                previous["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
    return out


_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


def _counts(raw: Any) -> dict[str, int]:
    """The usage fields an Anthropic usage object reports (absent ones left out)."""
    return {name: int(value) for name in _USAGE_FIELDS if (value := getattr(raw, name, None)) is not None}


def _usage(counts: dict[str, int]) -> ModelUsage:
    cached = counts.get("cache_read_input_tokens", 0)
    written = counts.get("cache_creation_input_tokens", 0)
    return ModelUsage(
        input_tokens=counts.get("input_tokens", 0) + cached + written,
        output_tokens=counts.get("output_tokens", 0),
        cached_input_tokens=cached,
        cache_write_tokens=written,
    )


def model_error(error: Exception) -> ModelError:
    if isinstance(error, anthropic.APIStatusError):
        return http_error(
            "anthropic",
            error.status_code,
            error.api_message or error.message,
            error.response.headers.get("retry-after"),
        )
    if isinstance(error, anthropic.APIConnectionError):
        return ModelError(f"anthropic: {error.message}", transient=True)
    return ModelError(f"anthropic: {error}", transient=False)


class AnthropicModel:
    remote = True  # a turn is an HTTP round trip to the provider: the run lends its slot meanwhile

    def __init__(self, model_id: str, api_key: str = "", base_url: str = "", timeout_s: float = 600.0) -> None:
        self.name = model_id
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key or None,
            base_url=base_url or None,
            max_retries=0,
            timeout=timeout_s,
        )

    def estimate_tokens(self, text: str) -> int:
        # Upper estimate: Claude tokens average ~3.5 characters of English; never fewer than words.
        return math.ceil(len(text) / 3) + 8

    def _arguments(self, request: ModelRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "model": self.name,
            "max_tokens": request.max_output_tokens,
            "messages": to_anthropic_messages(request.conversation()),
        }
        system = request.system_text()
        if system:
            arguments["system"] = system
        if request.tools:
            arguments["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": dict(t.input_schema)}
                for t in request.tools
            ]
        return arguments

    async def complete(self, request: ModelRequest, on_text: TextSink | None = None) -> ModelResponse:
        try:
            if on_text is None:
                message = await self._client.messages.create(**self._arguments(request))
                return self._response(message)
            return await self._stream(request, on_text)
        except anthropic.AnthropicError as error:
            raise model_error(error) from error

    @staticmethod
    def _response(message: Any) -> ModelResponse:
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in message.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                calls.append(ToolCall(block.id, block.name, dict(block.input or {})))
        return ModelResponse("".join(texts), calls, _usage(_counts(message.usage)), str(message.stop_reason or ""))

    async def _stream(self, request: ModelRequest, on_text: TextSink) -> ModelResponse:
        stream = await self._client.messages.create(**self._arguments(request), stream=True)
        texts: list[str] = []
        calls: list[ToolCall] = []
        tool: dict[str, Any] | None = None
        counts: dict[str, int] = {}
        stop_reason = ""
        async for event in stream:
            kind = event.type
            if kind == "message_start":
                counts = _counts(event.message.usage)
            elif kind == "content_block_start":
                block = event.content_block
                if block.type == "tool_use":
                    tool = {"id": block.id, "name": block.name, "json": []}
            elif kind == "content_block_delta":
                delta = event.delta
                if delta.type == "text_delta":
                    texts.append(delta.text)
                    on_text(delta.text)
                elif delta.type == "input_json_delta" and tool is not None:
                    tool["json"].append(delta.partial_json)
            elif kind == "content_block_stop" and tool is not None:
                raw = "".join(tool["json"])
                calls.append(ToolCall(tool["id"], tool["name"], json.loads(raw) if raw else {}))
                tool = None
            elif kind == "message_delta":
                stop_reason = str(event.delta.stop_reason or stop_reason)
                # message_delta usage is cumulative: what it reports replaces message_start's figures.
                counts.update(_counts(event.usage))
        return ModelResponse("".join(texts), calls, _usage(counts), stop_reason)
