"""The Anthropic and OpenAI-compatible adapters, through their real SDKs, against local fake servers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from loomflow.agent.models.anthropic import AnthropicModel
from loomflow.agent.models.base import Message, ModelError, ModelRequest, ModelUsage, ToolCall
from loomflow.agent.models.openai_compat import OpenAICompatModel
from loomflow.agent.models.retry import RetryPolicy, with_retries
from loomflow.agent.tools.builtins import calculator
from tests.agent.fakes.provider import FakeAnthropic, FakeOpenAI, FakeProvider, Reply

Adapter = AnthropicModel | OpenAICompatModel


@pytest.fixture(params=["anthropic", "openai"])
async def provider(request: pytest.FixtureRequest) -> AsyncIterator[tuple[FakeProvider, Adapter]]:
    fake: FakeProvider = FakeAnthropic() if request.param == "anthropic" else FakeOpenAI()
    await fake.start()
    model: Adapter
    if request.param == "anthropic":
        model = AnthropicModel("claude-test", api_key="test-key", base_url=fake.base_url, timeout_s=5)
    else:
        model = OpenAICompatModel("gpt-test", api_key="test-key", base_url=fake.base_url, timeout_s=5)
    yield fake, model
    await fake.stop()


def request_with_tools(messages: list[Message] | None = None) -> ModelRequest:
    return ModelRequest(
        system="be brief",
        messages=messages or [Message("user", "what is 2+2?")],
        tools=[calculator.spec],
        max_output_tokens=64,
        memories=["the user likes round numbers"],
    )


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_text_and_usage_with_cached_tokens_are_read(provider: tuple[FakeProvider, Adapter], stream: bool) -> None:
    fake, model = provider
    fake.queue(Reply(text="Four, as it happens.", input_tokens=120, output_tokens=7, cached_tokens=100))
    chunks: list[str] = []
    response = await model.complete(request_with_tools(), chunks.append if stream else None)
    assert response.text == "Four, as it happens."
    assert response.usage == ModelUsage(input_tokens=120, output_tokens=7, cached_input_tokens=100)
    if stream:
        assert len(chunks) > 1, "streamed text must arrive in several deltas"
        assert "".join(chunks) == response.text
    assert fake.requests[0].get("stream", False) is stream


async def test_anthropic_cache_writes_count_as_input_and_are_reported() -> None:
    fake = await FakeAnthropic().start()
    try:
        model = AnthropicModel("claude-test", api_key="k", base_url=fake.base_url)
        fake.queue(Reply(text="ok", input_tokens=300, cached_tokens=200, cache_write_tokens=50, output_tokens=2))
        response = await model.complete(request_with_tools())
        assert response.usage == ModelUsage(300, 2, 200, 50)
    finally:
        await fake.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_tool_calls_are_parsed_with_their_arguments(provider: tuple[FakeProvider, Adapter], stream: bool) -> None:
    fake, model = provider
    fake.queue(Reply(text="Let me compute.", tool_calls=[("call_1", "calculator", {"expression": "2+2"})]))
    response = await model.complete(request_with_tools(), (lambda _: None) if stream else None)
    assert response.tool_calls == [ToolCall("call_1", "calculator", {"expression": "2+2"})]
    assert response.text == "Let me compute."


async def test_request_carries_system_memories_tools_and_the_tool_round_trip(
    provider: tuple[FakeProvider, Adapter],
) -> None:
    fake, model = provider
    fake.queue(Reply(text="It is 4."))
    conversation = [
        Message("user", "what is 2+2?"),
        Message("assistant", "", (ToolCall("call_1", "calculator", {"expression": "2+2"}),)),
        Message("tool", "4", tool_call_id="call_1", tool_name="calculator"),
    ]
    await model.complete(request_with_tools(conversation))
    body = fake.requests[0]
    text = str(body)
    assert "the user likes round numbers" in text, "recalled memories must reach the provider"
    assert "be brief" in text
    tool_names = [t.get("name") or t["function"]["name"] for t in body["tools"]]
    assert tool_names == ["calculator"]
    if isinstance(fake, FakeAnthropic):
        assert body["max_tokens"] == 64
        result_block: dict[str, Any] = body["messages"][2]["content"][0]
        assert result_block["type"] == "tool_result"
        assert result_block["tool_use_id"] == "call_1"
    else:
        assert body["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "4"}
        assert body["messages"][-2]["tool_calls"][0]["function"]["name"] == "calculator"


@pytest.mark.parametrize("status", [429, 500, 503, 529])
async def test_rate_limits_and_server_errors_are_retried_until_success(
    provider: tuple[FakeProvider, Adapter], status: int
) -> None:
    fake, model = provider
    fake.queue(Reply(status=status, headers={"retry-after": "0"}), Reply(status=status), Reply(text="finally"))
    policy = RetryPolicy(attempts=4, base_delay_s=0.01)
    response = await with_retries(lambda: model.complete(request_with_tools()), policy, time.monotonic() + 10)
    assert response.text == "finally"
    assert len(fake.requests) == 3


async def test_retries_stop_after_the_attempts_and_report_a_transient_error(
    provider: tuple[FakeProvider, Adapter],
) -> None:
    fake, model = provider
    fake.queue(*[Reply(status=503)] * 3)
    policy = RetryPolicy(attempts=3, base_delay_s=0.01)
    with pytest.raises(ModelError) as caught:
        await with_retries(lambda: model.complete(request_with_tools()), policy, time.monotonic() + 10)
    assert caught.value.transient
    assert caught.value.status == 503
    assert len(fake.requests) == 3


async def test_a_bad_request_is_not_retried(provider: tuple[FakeProvider, Adapter]) -> None:
    fake, model = provider
    fake.queue(Reply(status=400), Reply(text="never reached"))
    with pytest.raises(ModelError) as caught:
        await with_retries(lambda: model.complete(request_with_tools()), RetryPolicy(), time.monotonic() + 10)
    assert not caught.value.transient
    assert caught.value.status == 400
    assert len(fake.requests) == 1


async def test_retry_after_is_honoured() -> None:
    fake = await FakeOpenAI().start()
    try:
        model = OpenAICompatModel("gpt-test", base_url=fake.base_url)
        fake.queue(Reply(status=429, headers={"retry-after": "0.3"}), Reply(text="ok"))
        started = time.monotonic()
        policy = RetryPolicy(attempts=2, base_delay_s=0.001)
        await with_retries(lambda: model.complete(request_with_tools()), policy, time.monotonic() + 10)
        assert time.monotonic() - started >= 0.3, "the provider's Retry-After must be waited out"
    finally:
        await fake.stop()


async def test_a_refused_connection_is_transient() -> None:
    fake = await FakeOpenAI().start()
    base_url = fake.base_url
    await fake.stop()  # nothing listens there any more
    model = OpenAICompatModel("gpt-test", base_url=base_url, timeout_s=2)
    with pytest.raises(ModelError) as caught:
        await model.complete(request_with_tools())
    assert caught.value.transient
