"""AgentService on the wire: requests in, the runner's answer or events out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from loomflow.agent import definitions
from loomflow.agent.erasure import UserData
from loomflow.agent.erasure.export import chunks
from loomflow.agent.runner import Runner
from loomflow.agent.toolcalls import Emit
from loomflow.kernel.auth import Role, current_principal, require_operator
from loomflow.kernel.errors import InvalidArgument, PermissionDenied, Unavailable
from loomflow.kernel.tenancy import is_all_tenants, scope_for, tenant_key
from loomflow.v1 import agent_pb2, agent_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_TENANT_PAGE = 20

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
        self.user_data: UserData | None = None  # ForgetUser / ExportUser, set with the runner

    def _runner(self) -> Runner:
        if self.runner is None:
            raise Unavailable("the agent is starting")
        return self.runner

    def _definitions(self, action: str) -> definitions.AgentDefinitions:
        require_operator(action)
        found = self._runner().definitions
        if found is None:
            raise Unavailable("this agent keeps no definitions")
        return found

    def _user_data(self) -> UserData:
        if self.user_data is None:
            raise Unavailable("the agent is starting")
        return self.user_data

    async def ForgetUser(self, request: agent_pb2.ForgetUserRequest, context: Context) -> agent_pb2.ForgetUserResponse:
        principal = require_operator("ForgetUser")
        job = await self._user_data().eraser.request(
            tenant_key(request.scope), request.request_id, f"{principal.role.value}:{principal.subject}"
        )
        return agent_pb2.ForgetUserResponse(erasure=job.to_proto())

    async def GetErasure(self, request: agent_pb2.GetErasureRequest, context: Context) -> agent_pb2.GetErasureResponse:
        require_operator("GetErasure")
        job = await self._user_data().eraser.get(tenant_key(request.scope), request.erasure_id)
        return agent_pb2.GetErasureResponse(erasure=job.to_proto())

    async def ExportUser(
        self, request: agent_pb2.ExportUserRequest, context: Context
    ) -> AsyncIterator[agent_pb2.ExportUserResponse]:
        # The kernel already bound a user token's subject to scope.user_id; a service credential is not the user.
        if current_principal().role is Role.SERVICE:
            raise PermissionDenied("ExportUser needs an operator credential, or the user's own token")
        data = await self._user_data().export(tenant_key(request.scope))
        for chunk in chunks(data):
            yield agent_pb2.ExportUserResponse(chunk=chunk)

    async def ListTenants(
        self, request: agent_pb2.AgentServiceListTenantsRequest, context: Context
    ) -> agent_pb2.AgentServiceListTenantsResponse:
        if not is_all_tenants(request.scope):
            raise InvalidArgument.field(
                "scope", "ListTenants lists every tenant: pass scope.all_tenants", "scope.all_tenants.required"
            )
        require_operator("ListTenants")
        # The Audit service lists every tenant for an operator only: the caller's credential goes along.
        operator = tuple((k, v) for k, v in context.invocation_metadata() or () if k == "authorization")
        rows, token = await self._user_data().list_tenants(
            tuple((k, str(v)) for k, v in operator), request.page_size or DEFAULT_TENANT_PAGE, request.page_token
        )
        return agent_pb2.AgentServiceListTenantsResponse(
            tenants=[
                agent_pb2.TenantPresence(scope=scope_for(r.tenant), last_seen_time=r.last_seen, services=r.services)
                for r in rows
            ],
            next_page_token=token,
        )

    async def ContinueRun(
        self, request: agent_pb2.ContinueRunRequest, context: Context
    ) -> agent_pb2.ContinueRunResponse:
        result = await self._runner().resume(
            request.scope, request.run_id, request.results, time_remaining=context.time_remaining()
        )
        return agent_pb2.ContinueRunResponse(result=result)

    async def ContinueRunStream(
        self, request: agent_pb2.ContinueRunStreamRequest, context: Context
    ) -> AsyncIterator[agent_pb2.ContinueRunStreamResponse]:
        runner = self._runner()
        async for event in _streamed(
            lambda emit: runner.resume(
                request.scope, request.run_id, request.results, time_remaining=context.time_remaining(), emit=emit
            )
        ):
            yield agent_pb2.ContinueRunStreamResponse(event=event)

    async def PutAgent(self, request: agent_pb2.PutAgentRequest, context: Context) -> agent_pb2.PutAgentResponse:
        book = self._definitions("PutAgent")
        definitions.reject_nul(request.agent)
        if request.agent.model:
            try:
                self._runner().catalog.resolve(request.agent.model)
            except InvalidArgument as error:
                raise InvalidArgument.field("agent.model", error.violations[0].description) from None
        stored = await book.put(definitions.from_proto(request.agent))
        return agent_pb2.PutAgentResponse(agent=definitions.to_proto(stored))

    async def GetAgent(self, request: agent_pb2.GetAgentRequest, context: Context) -> agent_pb2.GetAgentResponse:
        book = self._definitions("GetAgent")
        return agent_pb2.GetAgentResponse(agent=definitions.to_proto(await book.resolve_fresh(request.name)))

    async def ListAgents(self, request: agent_pb2.ListAgentsRequest, context: Context) -> agent_pb2.ListAgentsResponse:
        book = self._definitions("ListAgents")
        page, token = await book.list(request.page_token, request.page_size or definitions.DEFAULT_PAGE)
        return agent_pb2.ListAgentsResponse(agents=[definitions.to_proto(d) for d in page], next_page_token=token)

    async def DeleteAgent(
        self, request: agent_pb2.DeleteAgentRequest, context: Context
    ) -> agent_pb2.DeleteAgentResponse:
        book = self._definitions("DeleteAgent")
        return agent_pb2.DeleteAgentResponse(version=await book.delete(request.name))

    async def Run(self, request: agent_pb2.RunRequest, context: Context) -> agent_pb2.RunResponse:
        reject_nul(request.options)
        return await self._runner().run(request.scope, request.options, time_remaining=context.time_remaining())

    async def RunStream(
        self, request: agent_pb2.RunStreamRequest, context: Context
    ) -> AsyncIterator[agent_pb2.RunStreamResponse]:
        reject_nul(request.options)
        runner = self._runner()
        async for event in _streamed(
            lambda emit: runner.run(request.scope, request.options, time_remaining=context.time_remaining(), emit=emit)
        ):
            yield event


async def _streamed(
    start: Callable[[Emit], Awaitable[agent_pb2.RunResponse]],
) -> AsyncIterator[agent_pb2.RunStreamResponse]:
    """The events a run emits as they come, then its result; a caller that goes away cancels the run."""
    events: asyncio.Queue[agent_pb2.RunStreamResponse | None] = asyncio.Queue()
    run = asyncio.ensure_future(start(events.put_nowait))
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
