"""A local HTTP server speaking the OpenAI ``POST /v1/embeddings`` wire format (the agent fakes' pattern).

Vectors are the hashing embedder's of each input at the configured dimension, so
recall through it behaves like a real (if simple) model. Failures are scripted
with :class:`Reply` (``status`` != 200) and served first; with none queued, every
request succeeds. Request bodies and Authorization headers are recorded.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from loomflow.memory.recall.embedding import HashingEmbedder
from tests.agent.fakes.provider import FakeOpenAI, Reply


class FakeEmbeddings(FakeOpenAI):
    path = "/v1/embeddings"

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.embedder = HashingEmbedder(dim)
        self.authorizations: list[str] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.authorizations.append(request.headers.get("Authorization", ""))
        if not self.replies:
            self.replies.append(Reply())
        return await super()._handle(request)

    def completion(self, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": n, "embedding": [float(x) for x in self.embedder.embed(text)]}
            for n, text in enumerate(texts)
        ]
        data.reverse()  # servers need not answer in input order: the index says which is which
        tokens = sum(len(t.split()) for t in texts)
        return {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
