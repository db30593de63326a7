"""Local HTTP servers that speak the Anthropic Messages and OpenAI Chat Completions wire formats.

Each serves a queue of scripted replies on 127.0.0.1:0 (aiohttp), streams them
as Server-Sent Events when the request asks for ``stream``, and records every
request body, so adapter tests exercise the real SDKs over real HTTP.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    """One scripted answer: a completion, or an HTTP error (``status`` != 200)."""

    text: str = ""
    tool_calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """(id, name, arguments)."""
    input_tokens: int = 10
    output_tokens: int = 5
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    chunk: int = 3
    """Characters per streamed text or JSON delta."""
    held_until: asyncio.Event | None = None
    """The fake answers only once this is set (a provider still thinking, for as long as a test needs)."""


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class FakeProvider:
    path = ""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    async def start(self) -> FakeProvider:
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if not self.replies:
            return self.error(500, {"message": "the fake has no reply queued"})
        reply = self.replies.popleft()
        if reply.held_until is not None:
            await reply.held_until.wait()
        if reply.status != 200:
            return self.error(reply.status, {"message": f"scripted {reply.status}"}, reply.headers)
        if body.get("stream"):
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            for event, data in self.events(reply, body):
                prefix = f"event: {event}\n" if event else ""
                await response.write(f"{prefix}data: {data}\n\n".encode())
            await response.write_eof()
            return response
        return web.json_response(self.completion(reply, body))

    def error(self, status: int, error: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
        raise NotImplementedError

    def completion(self, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def events(self, reply: Reply, body: dict[str, Any]) -> list[tuple[str, str]]:
        raise NotImplementedError


class FakeAnthropic(FakeProvider):
    """POST /v1/messages. Usage reports input_tokens *without* cache reads and writes, as Anthropic does."""

    path = "/v1/messages"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error(self, status: int, error: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
        kind = {429: "rate_limit_error", 529: "overloaded_error", 400: "invalid_request_error"}.get(status, "api_error")
        payload = {"type": "error", "error": {"type": kind, **error}}
        return web.json_response(payload, status=status, headers=headers)

    @staticmethod
    def _usage(reply: Reply) -> dict[str, int]:
        return {
            "input_tokens": reply.input_tokens - reply.cached_tokens - reply.cache_write_tokens,
            "output_tokens": reply.output_tokens,
            "cache_read_input_tokens": reply.cached_tokens,
            "cache_creation_input_tokens": reply.cache_write_tokens,
        }

    def completion(self, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        content += [{"type": "tool_use", "id": i, "name": n, "input": a} for i, n, a in reply.tool_calls]
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
            "stop_sequence": None,
            "usage": self._usage(reply),
        }

    def events(self, reply: Reply, body: dict[str, Any]) -> list[tuple[str, str]]:
        usage = self._usage(reply)
        start_usage = {**usage, "output_tokens": 1}
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        }
        out: list[dict[str, Any]] = [{"type": "message_start", "message": message}]
        index = 0
        if reply.text:
            out.append({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
            out += [
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
                for piece in _pieces(reply.text, reply.chunk)
            ]
            out.append({"type": "content_block_stop", "index": 0})
            index = 1
        for call_id, name, arguments in reply.tool_calls:
            block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            out.append({"type": "content_block_start", "index": index, "content_block": block})
            out += [
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece},
                }
                for piece in _pieces(json.dumps(arguments), reply.chunk)
            ]
            out.append({"type": "content_block_stop", "index": index})
            index += 1
        stop = "tool_use" if reply.tool_calls else "end_turn"
        out.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": reply.output_tokens},
            }
        )
        out.append({"type": "message_stop"})
        return [(event["type"], json.dumps(event)) for event in out]


class FakeOpenAI(FakeProvider):
    """POST /v1/chat/completions. prompt_tokens includes cached tokens, as OpenAI reports them."""

    path = "/v1/chat/completions"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def error(self, status: int, error: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
        payload = {"error": {"type": "rate_limit_exceeded" if status == 429 else "server_error", **error}}
        return web.json_response(payload, status=status, headers=headers)

    @staticmethod
    def _usage(reply: Reply) -> dict[str, Any]:
        return {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
        }

    def completion(self, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
                for i, n, a in reply.tool_calls
            ]
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1,
            "model": body["model"],
            "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool_calls else "stop"}
            ],
            "usage": self._usage(reply),
        }

    def events(self, reply: Reply, body: dict[str, Any]) -> list[tuple[str, str]]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        out = [chunk({"role": "assistant", "content": ""})]
        out += [chunk({"content": piece}) for piece in _pieces(reply.text, reply.chunk) if piece]
        for index, (call_id, name, arguments) in enumerate(reply.tool_calls):
            first = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
            out.append(chunk({"tool_calls": [first]}))
            out += [
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                for piece in _pieces(json.dumps(arguments), reply.chunk)
            ]
        out.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
        usage_chunk = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": body["model"],
            "choices": [],
            "usage": self._usage(reply),
        }
        events = [("", json.dumps(c)) for c in [*out, usage_chunk]]
        events.append(("", "[DONE]"))
        return events
