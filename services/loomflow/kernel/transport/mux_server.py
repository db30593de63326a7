"""The server side of the multiplexed transport: ``MuxService.Multiplex`` over this process's pipeline.

A stream authenticates once, when it opens: only a service or operator principal may
open one (an end user calls the unary RPCs). Each carried call then runs the very
wrapped handler the unary RPC runs, through :class:`InProcessChannel` (so principal,
protovalidate, tenant binding, rate limits, error mapping, metrics and traces are the
wire's, and a call naming a tenant the principal may not act for fails alone). Each
call runs in its own task with the deadline it carries; a cancel frame cancels it.
Replies are coalesced: whatever finished while the last write was in flight goes in
the next one. At most :data:`MAX_IN_FLIGHT` calls run per stream (the client keeps
below its own, smaller window); calls past it fail alone with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
from grpc.aio import AioRpcError
from opentelemetry import context as otel_context
from opentelemetry import propagate

from loomflow.kernel import errors
from loomflow.kernel.auth import Role, bearer_token
from loomflow.kernel.interceptor import KernelInterceptor
from loomflow.kernel.security import Refusal, claimed_subject
from loomflow.kernel.transport.inprocess import InProcessChannel, LocalMethods
from loomflow.kernel.transport.mux import DETAILS_KEY, METHOD_OF_FIELD, SERVICE
from loomflow.v1 import mux_pb2, mux_pb2_grpc

log = logging.getLogger("loomflow.mux")

MAX_IN_FLIGHT = 1024
"""Calls running at once on one stream, at most (a client's window per stream is smaller)."""
MAX_BATCH = 64
"""Replies coalesced into one write, at most."""

Context = grpc.aio.ServicerContext[mux_pb2.MultiplexRequest, mux_pb2.MultiplexResponse]


class MuxServicer(mux_pb2_grpc.MuxServiceServicer):
    def __init__(
        self,
        methods: LocalMethods,
        interceptor: KernelInterceptor,
        *,
        traced: bool = False,
        max_message_bytes: int = 4 * 1024 * 1024,
        max_in_flight: int | None = None,
    ) -> None:
        self._methods = methods
        self._interceptor = interceptor
        self._traced = traced
        self._max_message_bytes = max_message_bytes
        self._max_in_flight = max_in_flight
        self._streams: set[_Stream] = set()
        self._draining = False

    def drain(self) -> None:
        """The server is stopping: open streams refuse new calls (UNAVAILABLE) and end once answered,
        so a long-lived stream does not hold the shutdown for its whole grace period."""
        self._draining = True
        for stream in list(self._streams):
            stream.drain()

    async def Multiplex(  # type: ignore[override]  # grpc.aio also takes a coroutine writing with context.write
        self, request_iterator: AsyncIterator[mux_pb2.MultiplexRequest], context: Context
    ) -> None:
        metadata = tuple(context.invocation_metadata() or ())
        try:
            principal = self._interceptor.authenticate(metadata, context)
        except errors.ServiceError as exc:
            await self._refuse(context, metadata, "-", exc.code, exc.message)
            return
        if principal.role is Role.USER:
            who = f"{principal.role.value}:{principal.subject}"
            reason = "end-user credentials cannot open a multiplexed stream: call the unary RPCs"
            await self._refuse(context, metadata, who, grpc.StatusCode.PERMISSION_DENIED, reason)
            return
        channel = InProcessChannel(
            self._methods,
            traced=self._traced,
            auth_context=context.auth_context(),
            max_message_bytes=self._max_message_bytes,
            peer=context.peer(),
        )
        limit = self._max_in_flight or MAX_IN_FLIGHT
        stream = _Stream(channel, metadata, limit, self._max_message_bytes, self._traced)
        if self._draining:
            stream.drain()
        self._streams.add(stream)
        try:
            await stream.serve(request_iterator, context)
        finally:
            self._streams.discard(stream)

    async def _refuse(
        self, context: Context, metadata: tuple[Any, ...], principal: str, code: grpc.StatusCode, reason: str
    ) -> None:
        """Records the refused stream as the pipeline records a refused call (security log, metric), and ends it."""
        try:
            claimed = claimed_subject(bearer_token(metadata))
        except errors.ServiceError:  # a malformed authorization header claims nobody
            claimed = ""
        refusal = Refusal(f"{SERVICE}/Multiplex", code.name, reason, principal, claimed, None, context.peer() or "")
        self._interceptor.refusals.record(SERVICE, refusal)
        await context.abort(code, reason)


class _Stream:
    """One open stream: the calls running on it and the replies waiting to be written."""

    def __init__(
        self,
        channel: InProcessChannel,
        metadata: tuple[tuple[str, Any], ...],
        max_in_flight: int,
        max_message_bytes: int,
        traced: bool,
    ) -> None:
        self._channel = channel
        self._metadata = metadata
        self._max_in_flight = max_in_flight
        self._max_bytes = max_message_bytes
        self._traced = traced
        self._running: dict[int, asyncio.Task[Any]] = {}
        self._replies: collections.deque[mux_pb2.MuxReply | None] = collections.deque()
        self._ready = asyncio.Event()
        self._draining = False

    def drain(self) -> None:
        self._draining = True
        if not self._running:
            self._push(None)

    async def serve(self, request_iterator: AsyncIterator[mux_pb2.MultiplexRequest], context: Context) -> None:
        reader = asyncio.get_running_loop().create_task(self._read(request_iterator))
        try:
            await self._write(context)
        finally:
            reader.cancel()
            for task in list(self._running.values()):
                task.cancel()

    async def _read(self, request_iterator: AsyncIterator[mux_pb2.MultiplexRequest]) -> None:
        try:
            async for batch in request_iterator:
                for call in batch.calls:
                    self._start(call)
                for call_id in batch.cancelled:  # after the calls: a call and its cancel may share a write
                    task = self._running.pop(call_id, None)
                    if task is not None:
                        task.cancel()
            while self._running:  # the caller is done sending: answer what runs, then end the stream
                await asyncio.wait(list(self._running.values()))
        finally:
            self._push(None)

    def _start(self, call: mux_pb2.MuxCall) -> None:
        call_id = call.id
        field = call.WhichOneof("request")
        if field is None:
            self._push(_error(call_id, grpc.StatusCode.INVALID_ARGUMENT, "the call carries no request"))
            return
        if self._draining:
            self._push(_error(call_id, grpc.StatusCode.UNAVAILABLE, "the server is shutting down"))
            return
        if len(self._running) >= self._max_in_flight or call_id in self._running:
            reason = "call id in use" if call_id in self._running else f"over {self._max_in_flight} calls in flight"
            self._push(_error(call_id, grpc.StatusCode.RESOURCE_EXHAUSTED, f"multiplexed stream: {reason}"))
            return
        method = METHOD_OF_FIELD[field]
        metadata = self._metadata + tuple(call.metadata.items()) if call.metadata else self._metadata
        timeout = call.timeout_us / 1e6 if call.timeout_us else None
        token = otel_context.attach(propagate.extract(call.metadata)) if self._traced and call.metadata else None
        try:
            task = self._channel.unary_unary(method)(getattr(call, field), timeout=timeout, metadata=metadata)
        finally:
            if token is not None:
                otel_context.detach(token)
        self._running[call_id] = task
        task.add_done_callback(lambda done: self._finished(call_id, method, done))

    def _finished(self, call_id: int, method: str, task: asyncio.Task[Any]) -> None:
        self._answer(call_id, method, task)
        if self._draining and not self._running:
            self._push(None)  # the last call of a draining stream is answered: end it

    def _answer(self, call_id: int, method: str, task: asyncio.Task[Any]) -> None:
        if self._running.get(call_id) is task:
            del self._running[call_id]
        if task.cancelled():
            return  # the caller cancelled it (no reply), or the stream is going away
        error = task.exception()
        if error is None:
            handler = self._channel.methods.get(method)
            serialize = handler.response_serializer if handler is not None else None
            result = task.result()
            payload: bytes = serialize(result) if serialize is not None else result.SerializeToString()
            if len(payload) > self._max_bytes:  # what the unary call's client would refuse to receive
                message = f"Received message larger than max ({len(payload)} vs. {self._max_bytes})"
                self._push(_error(call_id, grpc.StatusCode.RESOURCE_EXHAUSTED, message))
                return
            self._push(mux_pb2.MuxReply(id=call_id, response=payload))
        elif isinstance(error, AioRpcError):
            self._push(_failure(call_id, error))
        else:
            self._push(_error(call_id, grpc.StatusCode.UNKNOWN, f"Unexpected {type(error)}: {error}"))

    def _push(self, reply: mux_pb2.MuxReply | None) -> None:
        self._replies.append(reply)
        self._ready.set()

    async def _write(self, context: Context) -> None:
        replies = self._replies
        while True:
            await self._ready.wait()
            self._ready.clear()
            while replies:
                batch = mux_pb2.MultiplexResponse()
                size = 0
                while replies and len(batch.replies) < MAX_BATCH:
                    reply = replies[0]
                    if reply is None:
                        break
                    grows = reply.ByteSize() + 8
                    if batch.replies and size + grows > self._max_bytes:
                        break
                    replies.popleft()
                    batch.replies.append(reply)
                    size += grows
                if batch.replies:
                    await context.write(batch)
                if replies and replies[0] is None:
                    return


def _error(call_id: int, code: grpc.StatusCode, message: str, details: bytes = b"") -> mux_pb2.MuxReply:
    error = mux_pb2.MuxError(code=code.value[0], message=message, status_details=details)
    return mux_pb2.MuxReply(id=call_id, error=error)


def _failure(call_id: int, error: AioRpcError) -> mux_pb2.MuxReply:
    trailing: Mapping[str, Any] = dict(error.trailing_metadata() or ())
    details = trailing.get(DETAILS_KEY, b"")
    return _error(call_id, error.code(), error.details() or "", details if isinstance(details, bytes) else b"")


def add_to_server(
    server: grpc.aio.Server,
    methods: LocalMethods,
    interceptor: KernelInterceptor,
    *,
    traced: bool,
    max_message_bytes: int,
) -> MuxServicer:
    """Serves ``MuxService`` next to the services whose wrapped handlers ``methods`` holds."""
    servicer = MuxServicer(methods, interceptor, traced=traced, max_message_bytes=max_message_bytes)
    mux_pb2_grpc.add_MuxServiceServicer_to_server(servicer, server)
    return servicer
