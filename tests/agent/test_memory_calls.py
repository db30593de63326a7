"""A run reads Memory once before its first model call (issue 24, the hop tax): one GetContext carries
the recall, the session's history, the working blocks and the facts. Counted at the server, by the
kernel's per-RPC metrics, over every transport the Agent can use (tests/agent/conftest.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from aiohttp import web
from prometheus_client import REGISTRY

from tests.agent.conftest import secure_suite
from tests.agent.fakes.provider import FakeOpenAI, Reply

MEMORY = "loomflow.v1.MemoryService"


def memory_calls() -> Counter[str]:
    """Memory RPCs served so far in this process, by method (the kernel's latency histogram counts each)."""
    served: Counter[str] = Counter()
    for family in REGISTRY.collect():
        if family.name != "loomflow_rpc_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels.get("service") == MEMORY:
                served[sample.labels["method"]] += int(sample.value)
    return served


class CountingOpenAI(FakeOpenAI):
    """The model provider, noting the Memory calls served by the time each model request arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.memory_calls_at_request: list[Counter[str]] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.memory_calls_at_request.append(memory_calls())
        return await super()._handle(request)


async def test_a_run_makes_exactly_one_memory_call_before_its_first_model_call(tmp_path: Path) -> None:
    fake = CountingOpenAI()
    await fake.start()
    try:
        fake.queue(Reply(tool_calls=[("c1", "calculator", {"expression": "6*7"})]), Reply(text="It is 42."))
        async with secure_suite(
            tmp_path, agent={"model": "openai:gpt-fake", "openai_base_url": fake.base_url}
        ) as suite:
            memory = suite.memory()
            # Something for every part to find: another session's turn, this session's, a block, a fact.
            await memory.remember("what is 6*7 again", "42", user_id="alice", session_id="earlier")
            await memory.remember("hello there", "hi", user_id="alice", session_id="now")
            await memory.put_block("persona", "terse", user_id="alice")
            await memory.assert_fact("alice", "likes", "math", user_id="alice")
            await memory.close()
            before = memory_calls()
            result = await suite.agent("alice").run("alice asks: what is 6*7?", user_id="alice", session_id="now")
            after = memory_calls()
    finally:
        await fake.stop()
    assert result.output == "It is 42."
    assert len(fake.memory_calls_at_request) == 2, "two model calls: the tool call and the answer"
    assert fake.memory_calls_at_request[0] - before == Counter({"GetContext": 1}), (
        "before its first model call a run reads Memory once, with GetContext, and nothing else"
    )
    assert after - before == Counter({"GetContext": 1, "Remember": 1}), "the whole run: one read, one write"
    assert result.recalled_episode_ids, "the one call brought the recalled turn of the other session"
    assert result.history_episode_ids, "and this session's history"
    system = fake.requests[0]["messages"][0]["content"]
    assert "terse" in system, "and the tenant-wide block"
    assert "alice likes math" in system, "and the fact sharing a word with the prompt"
