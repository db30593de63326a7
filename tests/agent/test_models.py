"""The echo and scripted models, the model catalog and the retry policy."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from loomflow.agent.models import (
    EchoModel,
    Message,
    ModelCatalog,
    ModelError,
    ModelRequest,
    ProviderSettings,
    RetryPolicy,
    count_tokens,
    load_script,
    with_retries,
)
from loomflow.agent.models.anthropic import AnthropicModel
from loomflow.agent.models.base import ToolCall
from loomflow.agent.models.echo import parse_directives
from loomflow.agent.models.openai_compat import OpenAICompatModel
from loomflow.kernel.errors import InvalidArgument


def ask(prompt: str, **kwargs: object) -> ModelRequest:
    return ModelRequest(system="sys", messages=[Message("user", prompt)], **kwargs)  # type: ignore[arg-type]


async def test_echo_answers_with_the_prompt_and_counts_tokens_deterministically() -> None:
    model = EchoModel()
    first = await model.complete(ask("Hello, world!"))
    second = await model.complete(ask("Hello, world!"))
    assert first.text == "Hello, world!"
    assert first.usage == second.usage
    assert first.usage.input_tokens == count_tokens("sys") + count_tokens("Hello, world!") == 5
    assert first.usage.output_tokens == 4


async def test_echo_shows_recalled_memories_and_respects_the_output_limit() -> None:
    model = EchoModel()
    reply = await model.complete(ask("what is my colour?", memories=["my colour is teal"]))
    assert reply.text == "what is my colour?\n[recalled] my colour is teal"
    short = await model.complete(ask("one two three four five", max_output_tokens=2))
    assert short.text == "one two"
    assert short.usage.output_tokens == 2


async def test_echo_turns_call_directives_into_tool_calls_then_echoes_their_results() -> None:
    model = EchoModel()
    prompt = 'please compute\n/call calculator {"expression": "2+2"}'
    first = await model.complete(ask(prompt))
    assert [(c.name, c.arguments) for c in first.tool_calls] == [("calculator", {"expression": "2+2"})]
    assert first.text == ""
    messages = [
        Message("user", prompt),
        Message("assistant", "", tuple(first.tool_calls)),
        Message("tool", "4", tool_call_id=first.tool_calls[0].id, tool_name="calculator"),
    ]
    second = await model.complete(ModelRequest("sys", messages))
    assert second.text == "please compute\n[calculator] 4"
    assert second.tool_calls == []


def test_directives_with_bad_json_stay_text() -> None:
    calls, rest = parse_directives("/call calculator {not json}\nhi")
    assert calls == []
    assert rest == "/call calculator {not json}\nhi"


async def test_echo_streams_its_text() -> None:
    chunks: list[str] = []
    await EchoModel().complete(ask("streamed"), chunks.append)
    assert chunks == ["streamed"]


async def test_scripted_model_plays_turns_per_case_and_fails_transiently_once(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            [
                {"when": "flaky", "turns": [{"error": 503}, {"text": "never"}]},
                {"turns": [{"tool_calls": [{"name": "calculator", "arguments": {"expression": "1"}}]}, {"text": "1"}]},
            ]
        )
    )
    model = load_script(script)
    first = await model.complete(ask("anything"))
    assert first.tool_calls[0].name == "calculator"
    with pytest.raises(ModelError) as caught:
        await model.complete(ask("flaky"))
    assert caught.value.transient
    assert (await model.complete(ask("flaky"))).text == "", "the retry of a transient failure gets the turn"


def test_catalog_resolves_offered_models_and_refuses_others() -> None:
    catalog = ModelCatalog("echo", ProviderSettings(anthropic_api_key="k"), offered=["anthropic:claude-x"])
    assert catalog.resolve("").name == "echo"
    claude = catalog.resolve("anthropic:claude-x")
    assert isinstance(claude, AnthropicModel)
    assert claude.name == "claude-x"
    assert catalog.resolve("anthropic:claude-x") is claude, "adapters are made once and reused"
    with pytest.raises(InvalidArgument) as caught:
        catalog.resolve("openai:gpt-other")
    assert caught.value.violations[0].field == "options.model"


def test_catalog_offers_any_provider_model_with_a_star() -> None:
    catalog = ModelCatalog("echo", ProviderSettings(), offered=["*"])
    assert isinstance(catalog.resolve("openai:llama3"), OpenAICompatModel)
    with pytest.raises(InvalidArgument):
        catalog.resolve("mystery")


def test_a_bad_default_model_fails_at_start() -> None:
    with pytest.raises(InvalidArgument):
        ModelCatalog("scripted", ProviderSettings())  # no script configured


async def test_retries_give_up_before_the_deadline() -> None:
    attempts = 0

    async def always_busy() -> str:
        nonlocal attempts
        attempts += 1
        raise ModelError("busy", transient=True, retry_after_s=5)

    started = time.monotonic()
    with pytest.raises(ModelError):
        await with_retries(always_busy, RetryPolicy(attempts=10), time.monotonic() + 0.5)
    assert attempts == 1, "a wait past the run's deadline is not worth starting"
    assert time.monotonic() - started < 0.5


async def test_retries_refuse_once_text_was_streamed() -> None:
    attempts = 0

    async def fails_midway() -> str:
        nonlocal attempts
        attempts += 1
        raise ModelError("dropped", transient=True)

    with pytest.raises(ModelError):
        await with_retries(fails_midway, RetryPolicy(base_delay_s=0.001), time.monotonic() + 5, lambda: False)
    assert attempts == 1


@pytest.mark.parametrize(
    "memories",
    [(), ("my colour is teal → noted",), ("a-b c", "x.y", "[recalled] nested → yes!", "")],
)
async def test_echo_counts_by_parts_exactly_what_the_whole_texts_count(memories: tuple[str, ...]) -> None:
    messages = [
        Message("user", 'compute, please:\n/call calculator {"expression": "2+2"}'),
        Message("assistant", "", (ToolCall("c-1", "calculator", {"expression": "2+2"}),)),
        Message("tool", "4 (exactly)", tool_call_id="c-1", tool_name="calculator"),
    ]
    request = ModelRequest("You are terse.", messages, memories=memories, max_output_tokens=1000)
    reply = await EchoModel().complete(request)
    assert reply.usage.output_tokens == count_tokens(reply.text)
    whole_input = count_tokens(request.system_text()) + sum(count_tokens(m.content) for m in messages)
    whole_input += count_tokens("calculator") + count_tokens('{"expression": "2+2"}')
    assert reply.usage.input_tokens == whole_input
