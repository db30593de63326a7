"""OpenAI Chat Completions adapter (the ``openai`` SDK) for OpenAI and compatible servers.

``base_url`` points it at vLLM, Ollama, LiteLLM or any server speaking the Chat
Completions wire format; those often need no key, so a placeholder is sent when
none is configured. Usage: ``prompt_tokens`` includes cached tokens, reported
in ``prompt_tokens_details.cached_tokens``. Streaming asks for usage in the
final chunk (``stream_options.include_usage``).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import openai

from loomflow.agent.models.base import (
    ModelError,
    ModelRequest,
    ModelResponse,
    ModelUsage,
    TextSink,
    ToolCall,
    http_error,
)

_PLACEHOLDER_KEY = "not-needed"  # local OpenAI-compatible servers accept any key


def to_openai_messages(system: str, messages: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for m in messages:
        if m.role == "user":
            out.append({"role": "user", "content": m.content})
        elif m.role == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": m.content or None}
            if m.tool_calls:
                entry["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                    }
                    for c in m.tool_calls
                ]
            out.append(entry)
        else:
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
    return out


def _usage(raw: Any) -> ModelUsage:
    if raw is None:
        return ModelUsage()
    details = getattr(raw, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    return ModelUsage(
        input_tokens=int(raw.prompt_tokens or 0),
        output_tokens=int(raw.completion_tokens or 0),
        cached_input_tokens=cached,
    )


def _arguments(raw: str, name: str) -> dict[str, Any]:
    try:
        parsed = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as error:
        raise ModelError(f"openai: tool call {name} has invalid JSON arguments: {error}", transient=False) from None
    if not isinstance(parsed, dict):
        raise ModelError(f"openai: tool call {name} arguments are not an object", transient=False)
    return parsed


def model_error(error: Exception) -> ModelError:
    if isinstance(error, openai.APIStatusError):
        return http_error("openai", error.status_code, error.message, error.response.headers.get("retry-after"))
    if isinstance(error, openai.APIConnectionError):
        return ModelError(f"openai: {error.message}", transient=True)
    return ModelError(f"openai: {error}", transient=False)


class OpenAICompatModel:
    remote = True  # a turn is an HTTP round trip to the provider: the run lends its slot meanwhile

    def __init__(self, model_id: str, api_key: str = "", base_url: str = "", timeout_s: float = 600.0) -> None:
        self.name = model_id
        key = api_key or os.environ.get("OPENAI_API_KEY") or _PLACEHOLDER_KEY
        self._client = openai.AsyncOpenAI(api_key=key, base_url=base_url or None, max_retries=0, timeout=timeout_s)

    def estimate_tokens(self, text: str) -> int:
        return math.ceil(len(text) / 3) + 8

    def _arguments(self, request: ModelRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "model": self.name,
            "max_tokens": request.max_output_tokens,
            "messages": to_openai_messages(request.system_text(), request.conversation()),
        }
        if request.tools:
            arguments["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": dict(t.input_schema)},
                }
                for t in request.tools
            ]
        return arguments

    async def complete(self, request: ModelRequest, on_text: TextSink | None = None) -> ModelResponse:
        try:
            if on_text is None:
                completion = await self._client.chat.completions.create(**self._arguments(request))
                return self._response(completion)
            return await self._stream(request, on_text)
        except openai.OpenAIError as error:
            raise model_error(error) from error

    @staticmethod
    def _response(completion: Any) -> ModelResponse:
        if not completion.choices:
            raise ModelError("openai: the completion has no choices", transient=True)
        choice = completion.choices[0]
        message = choice.message
        calls = [
            ToolCall(c.id, c.function.name, _arguments(c.function.arguments or "", c.function.name))
            for c in (message.tool_calls or ())
        ]
        return ModelResponse(message.content or "", calls, _usage(completion.usage), str(choice.finish_reason or ""))

    async def _stream(self, request: ModelRequest, on_text: TextSink) -> ModelResponse:
        stream = await self._client.chat.completions.create(
            **self._arguments(request), stream=True, stream_options={"include_usage": True}
        )
        texts: list[str] = []
        pending: dict[int, dict[str, Any]] = {}  # tool calls arrive in pieces, keyed by index
        usage = ModelUsage()
        finish = ""
        async for chunk in stream:
            if chunk.usage is not None:
                usage = _usage(chunk.usage)
            for choice in chunk.choices:
                delta = choice.delta
                if delta.content:
                    texts.append(delta.content)
                    on_text(delta.content)
                for piece in delta.tool_calls or ():
                    entry = pending.setdefault(piece.index, {"id": "", "name": "", "arguments": []})
                    if piece.id:
                        entry["id"] = piece.id
                    if piece.function is not None:
                        if piece.function.name:
                            entry["name"] = piece.function.name
                        if piece.function.arguments:
                            entry["arguments"].append(piece.function.arguments)
                if choice.finish_reason:
                    finish = str(choice.finish_reason)
        calls = [
            ToolCall(e["id"], e["name"], _arguments("".join(e["arguments"]), e["name"]))
            for _, e in sorted(pending.items())
        ]
        return ModelResponse("".join(texts), calls, usage, finish)
