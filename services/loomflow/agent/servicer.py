"""AgentService on the wire: requests in, the runner's answer or events out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from loomflow.agent.runner import Runner
from loomflow.kernel.errors import InvalidArgument, Unavailable
from loomflow.v1 import agent_pb2, agent_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]

_DONE = None


def reject_nul(options: agent_pb2.RunOptions) -> None:
    """U+0000 cannot be stored by every backend the run writes to: refuse it up front, naming the field."""
    if "\x00" in options.prompt:
        raise InvalidArgument.field("options.prompt", "must not contain NUL characters (U+0000)")
    if "\x00" in options.session_id:
        raise InvalidArgument.field("options.session_id", "must not contain NUL characters (U+0000)")
    for key, value in options.metadata.items():
        if "\x00" in key or "\x00" in value:
            raise InvalidArgument.field(f"options.metadata[{key!r}]", "must not contain NUL characters (U+0000)")


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self) -> None:
        self.runner: Runner | None = None  # set when the service starts (channels need the event loop)

    def _runner(self) -> Runner:
        if self.runner is None:
            raise Unavailable("the agent is starting")
        return self.runner

    async def Run(self, request: agent_pb2.RunRequest, context: Context) -> agent_pb2.RunResponse:
        reject_nul(request.options)
        return await self._runner().run(request.scope, request.options, time_remaining=context.time_remaining())

    async def RunStream(
        self, request: agent_pb2.RunStreamRequest, context: Context
    ) -> AsyncIterator[agent_pb2.RunStreamResponse]:
        reject_nul(request.options)
        events: asyncio.Queue[agent_pb2.RunStreamResponse | None] = asyncio.Queue()
        run = asyncio.ensure_future(
            self._runner().run(
                request.scope, request.options, time_remaining=context.time_remaining(), emit=events.put_nowait
            )
        )
        run.add_done_callback(lambda _: events.put_nowait(_DONE))
        try:
            while (event := await events.get()) is not _DONE:
                yield event
            yield agent_pb2.RunStreamResponse(result=run.result())
        finally:
            if not run.done():  # the caller went away: cancelling the run releases its reservation
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await run
