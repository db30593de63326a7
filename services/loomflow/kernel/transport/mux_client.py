"""The client side of the multiplexed transport: a channel whose unary calls travel over a few streams.

:class:`MuxChannel` wraps a ``grpc.aio.Channel`` and is accepted by the generated stubs
in its place. A unary call the envelope can carry becomes a ``MuxCall`` on
one of ``streams`` long-lived ``MuxService.Multiplex`` streams; other calls (the
server-streaming ones) go over the wrapped channel unchanged. Each stream has a writer
task that coalesces whatever calls are pending into one write (up to ``batch``) and a
reader task that hands each reply to its caller. What the caller sees is what the unary
call gives: the response, or a ``grpc.aio.AioRpcError`` with the code, message and
``grpc-status-details-bin`` trailer of the failure.

- **Authentication once per stream.** The stream opens with the caller's
  ``authorization`` metadata (none over mTLS: the certificate is the credential); a
  call presenting another credential (a re-minted token) opens a fresh stream, and
  the old one closes once its calls are answered.
- **Deadlines and cancellation.** A call carries its remaining time; the server
  enforces it, and so does the caller, which sends a cancel frame when it gives up
  (deadline, or its task cancelled), cancelling the handler.
- **Backpressure and fairness.** At most ``max_in_flight`` calls per stream; a call
  past it waits for a slot (no unbounded queue). One tenant holds at most a quarter
  of all slots, and waiting calls are admitted in order, skipping a tenant at its
  share: a tenant flooding the channel cannot starve the others.
- **Reconnect.** When a stream breaks (the server restarted), its calls in flight fail
  UNAVAILABLE (or with the stream's own refusal: UNAUTHENTICATED, PERMISSION_DENIED)
  and the next call opens a new stream; the wrapped channel reconnects with its own
  backoff. A server without ``MuxService`` (UNIMPLEMENTED) makes later calls unary.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import grpc
from grpc.aio import AioRpcError
from opentelemetry import propagate, trace

from loomflow.kernel.transport.inprocess import rpc_error
from loomflow.kernel.transport.mux import AUTHORIZATION, DETAILS_KEY, FIELD_OF_METHOD, METHOD
from loomflow.v1 import mux_pb2

Metadata = Iterable[tuple[str, str | bytes]]
_DEADLINE = "Deadline Exceeded"
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_PASSED_ON = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNIMPLEMENTED)
"""Stream failures a call reports as they are; any other breaks the stream's calls with UNAVAILABLE."""


@dataclass(frozen=True)
class MuxSettings:
    streams: int = 2
    """Long-lived streams per channel (per service address)."""
    batch: int = 64
    """Calls coalesced into one write, at most."""
    max_in_flight: int = 256
    """Calls in flight per stream, at most: one more waits for a slot."""
    tenant_share: float = 0.25
    """The share of all slots one tenant may hold at once."""


class MuxChannel:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        settings: MuxSettings | None = None,
        *,
        max_message_bytes: int = 4 * 1024 * 1024,
        traced: bool = False,
    ) -> None:
        self.channel = channel
        self.settings = settings or MuxSettings()
        self.max_message_bytes = max_message_bytes
        self.traced = traced
        self.unary_fallback = False  # set when the server has no MuxService
        s = self.settings
        self._open = channel.stream_stream(
            METHOD,
            request_serializer=mux_pb2.MultiplexRequest.SerializeToString,
            response_deserializer=mux_pb2.MultiplexResponse.FromString,
        )
        self._streams: list[_Stream | None] = [None] * max(1, s.streams)
        self._tenant_cap = max(1, int(len(self._streams) * max(1, s.max_in_flight) * s.tenant_share))
        self._by_tenant: collections.Counter[str] = collections.Counter()
        self._waiting: collections.deque[tuple[str, tuple[tuple[str, Any], ...], asyncio.Future[_Stream]]] = (
            collections.deque()
        )
        self._ids = itertools.count(1)
        self._closed = False

    # -- what generated stubs call ------------------------------------------

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        field = FIELD_OF_METHOD.get(method)
        if field is None or response_deserializer is None:
            return self.channel.unary_unary(method, request_serializer, response_deserializer, **kwargs)
        unary = self.channel.unary_unary(method, request_serializer, response_deserializer, **kwargs)
        return _UnaryUnary(self, field, response_deserializer, unary)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.channel.unary_stream(method, *args, **kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.channel.stream_unary(method, *args, **kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.channel.stream_stream(method, *args, **kwargs)

    def as_channel(self) -> grpc.aio.Channel:
        """This channel, typed as what generated stubs take (it implements the methods they call)."""
        return cast(grpc.aio.Channel, self)

    async def channel_ready(self) -> None:
        await self.channel.channel_ready()

    async def close(self, grace: float | None = None) -> None:
        """Ends the streams (their calls in flight fail); the wrapped channel is its owner's to close."""
        self._closed = True
        for stream in self._streams:
            if stream is not None:
                stream.stop("the channel closed")

    # -- slots ----------------------------------------------------------------

    async def _acquire(self, tenant: str, auth: tuple[tuple[str, Any], ...]) -> _Stream:
        """A slot on a stream for one call of ``tenant``: at once, or when one frees (taken for it then)."""
        stream = self._free_stream(tenant, auth)
        if stream is not None:
            self._claim(tenant, stream)
            return stream
        waiter: asyncio.Future[_Stream] = asyncio.get_running_loop().create_future()
        entry = (tenant, auth, waiter)
        self._waiting.append(entry)
        try:
            return await waiter
        except BaseException:
            if entry in self._waiting:
                self._waiting.remove(entry)
            elif waiter.done() and not waiter.cancelled():
                self._release(tenant, waiter.result())  # given a slot it will not use: pass it on
            raise

    def _claim(self, tenant: str, stream: _Stream) -> None:
        self._by_tenant[tenant] += 1
        stream.in_flight += 1

    def _free_stream(self, tenant: str, auth: tuple[tuple[str, Any], ...]) -> _Stream | None:
        """The least busy stream with a free slot, if ``tenant`` is within its share; None: wait."""
        if self._by_tenant[tenant] >= self._tenant_cap:
            return None
        best: _Stream | None = None
        for index, stream in enumerate(self._streams):
            if stream is None or stream.broken or stream.auth != auth:
                if stream is not None:
                    stream.retire()
                stream = self._streams[index] = _Stream(self, auth)
            if stream.in_flight < self.settings.max_in_flight and (best is None or stream.in_flight < best.in_flight):
                best = stream
        return best

    def _release(self, tenant: str, stream: _Stream) -> None:
        left = self._by_tenant[tenant] - 1
        if left:
            self._by_tenant[tenant] = left
        else:
            del self._by_tenant[tenant]
        stream.in_flight -= 1
        if stream.retiring and stream.in_flight == 0:
            stream.stop("retired")
        if self._waiting:
            self._wake()

    def _wake(self) -> None:
        """Gives freed slots to waiting calls in order, skipping a tenant at its share."""
        for entry in list(self._waiting):
            tenant, auth, waiter = entry
            if waiter.done():
                self._waiting.remove(entry)
                continue
            stream = self._free_stream(tenant, auth)
            if stream is None:
                if self._by_tenant[tenant] < self._tenant_cap:
                    return  # no slot at all: the rest wait too
                continue  # this tenant is at its share: the next may go
            self._waiting.remove(entry)
            self._claim(tenant, stream)
            waiter.set_result(stream)

    def _stream_failed(self, code: grpc.StatusCode) -> None:
        if code is grpc.StatusCode.UNIMPLEMENTED:
            self.unary_fallback = True  # a server without MuxService: the unary RPCs still work
        if self._waiting:
            self._wake()


class _UnaryUnary:
    """``stub.Method(request, timeout=..., metadata=...)``: returns an awaitable call (a task)."""

    def __init__(self, channel: MuxChannel, field: str, deserialize: Callable[[bytes], Any], unary: Any) -> None:
        self._channel = channel
        self._field = field
        self._deserialize = deserialize
        self._unary = unary

    def __call__(
        self, request: Any, *, timeout: float | None = None, metadata: Metadata | None = None, **kwargs: Any
    ) -> Any:
        if self._channel.unary_fallback or self._channel._closed:
            return self._unary(request, timeout=timeout, metadata=metadata, **kwargs)
        return asyncio.get_running_loop().create_task(self._call(request, timeout, metadata))

    async def _call(self, request: Any, timeout: float | None, metadata: Metadata | None) -> Any:  # noqa: ASYNC109  # grpc's call signature
        channel = self._channel
        if timeout is not None and timeout <= 0:
            raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, _DEADLINE)
        size = request.ByteSize()
        if size > channel.max_message_bytes:  # the check grpc makes before sending
            raise rpc_error(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Sent message larger than max ({size} vs. {channel.max_message_bytes})",
            )
        auth: tuple[tuple[str, Any], ...] = ()
        extra: dict[str, str] = {}
        for key, value in metadata or ():
            if key == AUTHORIZATION:
                auth = ((key, value),)
            elif isinstance(value, str):
                extra[key] = value
        if channel.traced and trace.get_current_span().get_span_context().is_valid:
            propagate.inject(extra)
        deadline = None if timeout is None else time.monotonic() + timeout
        tenant = _tenant(request)
        clock = asyncio.timeout(timeout)
        try:
            async with clock:
                stream = await channel._acquire(tenant, auth)
                try:
                    reply = await stream.send(self._field, request, deadline, extra)
                finally:
                    channel._release(tenant, stream)
        except TimeoutError:
            # Ask the timeout itself, not the wall clock: uvloop's timers run on a clock cached per loop
            # iteration at millisecond grain, so they may fire a little before time.monotonic() reaches
            # the deadline (tests/test_transport_mux_deadlines.py; it was an INTERNAL in the fault smoke).
            if clock.expired():
                raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, _DEADLINE) from None
            raise
        if reply.WhichOneof("outcome") == "response":
            return self._deserialize(reply.response)
        error = reply.error
        trailing = ((DETAILS_KEY, error.status_details),) if error.status_details else ()
        raise rpc_error(_CODES.get(error.code, grpc.StatusCode.UNKNOWN), error.message, trailing)


def _tenant(request: Any) -> str:
    """Who a call acts for, for fairness (validated on the server; here only counted)."""
    scope = getattr(request, "scope", None)
    if scope is None:
        return ""
    kind = scope.WhichOneof("kind")
    return scope.user_id if kind == "user_id" else kind or ""


class _Stream:
    """One ``Multiplex`` stream: its pending calls, the calls awaiting replies, a writer and a reader."""

    def __init__(self, owner: MuxChannel, auth: tuple[tuple[str, Any], ...]) -> None:
        self.owner = owner
        self.auth = auth
        self.in_flight = 0
        self.broken = False
        self.retiring = False
        self._pending: collections.deque[mux_pb2.MuxCall] = collections.deque()
        self._cancelled: list[int] = []
        self._waiting: dict[int, asyncio.Future[mux_pb2.MuxReply]] = {}
        self._ready = asyncio.Event()
        self._call = owner._open(metadata=auth or None)
        loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._write())
        self._reader = loop.create_task(self._read())

    async def send(
        self, field: str, request: Any, deadline: float | None, metadata: dict[str, str]
    ) -> mux_pb2.MuxReply:
        if self.broken:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, "multiplexed stream: broken")
        call_id = next(self.owner._ids)
        call = mux_pb2.MuxCall(id=call_id, metadata=metadata or None)
        getattr(call, field).CopyFrom(request)
        if deadline is not None:
            call.timeout_us = max(1, int((deadline - time.monotonic()) * 1e6))
        reply: asyncio.Future[mux_pb2.MuxReply] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = reply
        self._pending.append(call)
        self._ready.set()
        try:
            return await reply
        except asyncio.CancelledError:  # the caller gave up (its deadline, or it was cancelled)
            if self._waiting.pop(call_id, None) is not None and not self.broken:
                self._cancelled.append(call_id)
                self._ready.set()
            raise

    async def _write(self) -> None:
        pending, limit, max_bytes = self._pending, self.owner.settings.batch, self.owner.max_message_bytes
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while pending or self._cancelled:
                    batch = mux_pb2.MultiplexRequest()
                    size = 0
                    while pending and len(batch.calls) < limit:
                        grows = pending[0].ByteSize() + 8
                        if batch.calls and size + grows > max_bytes:
                            break
                        batch.calls.append(pending.popleft())
                        size += grows
                    if self._cancelled:
                        batch.cancelled.extend(self._cancelled)
                        self._cancelled.clear()
                    await self._call.write(batch)
        except (AioRpcError, asyncio.InvalidStateError) as error:
            self._break(error)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001  # a broken stream, however it shows
            self._break(error)

    async def _read(self) -> None:
        waiting = self._waiting
        error: BaseException | None = None
        try:
            async for batch in self._call:
                for reply in batch.replies:
                    future = waiting.pop(reply.id, None)
                    if future is not None and not future.done():
                        future.set_result(reply)
        except asyncio.CancelledError:
            raise
        except Exception as failure:  # noqa: BLE001  # AioRpcError, or the call torn down
            error = failure
        self._break(error)

    def _break(self, error: BaseException | None) -> None:
        """Fails every call awaiting a reply; the next call opens a new stream."""
        if self.broken:
            return
        self.broken = True
        code = error.code() if isinstance(error, AioRpcError) else grpc.StatusCode.UNAVAILABLE
        details = (error.details() if isinstance(error, AioRpcError) else str(error or "")) or "stream ended"
        failure = (
            rpc_error(code, details)
            if code in _PASSED_ON
            else rpc_error(grpc.StatusCode.UNAVAILABLE, f"multiplexed stream broke: {details}")
        )
        waiting = list(self._waiting.values())
        self._waiting.clear()
        self._pending.clear()
        for future in waiting:
            if not future.done():
                future.set_exception(failure)
        self._call.cancel()
        self._writer.cancel()
        self.owner._stream_failed(code)

    def retire(self) -> None:
        """No new calls; ends once the calls in flight are answered."""
        self.retiring = True
        if self.in_flight == 0:
            self.stop("retired")

    def stop(self, reason: str) -> None:
        if not self.broken:
            self.broken = True
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(rpc_error(grpc.StatusCode.UNAVAILABLE, f"multiplexed stream: {reason}"))
            self._waiting.clear()
            self._call.cancel()
            self._writer.cancel()
            self._reader.cancel()
