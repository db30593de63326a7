"""The in-process transport: a channel whose calls run the kernel pipeline's wrapped handlers directly.

When a caller and a service share a process, a call still passes every check the
wire applies, because it runs the very handler :class:`~loomflow.kernel.interceptor.WrappingRegistrar`
registered with the gRPC server (authenticate → validate → tenant binding → limits →
handler → error mapping → metrics and log). What it skips is the socket, HTTP/2 and
(de)serialization: ~200 µs of CPU on each side per call in grpc.aio.

Generated stubs accept :class:`InProcessChannel` in place of a ``grpc.aio.Channel``.
Each call runs in its own task, as grpc.aio runs each RPC in its own task on the
server: the handler's context variables (principal, log fields, baggage) never leak
into the caller's, and cancelling the call cancels the handler. Failures reach the
caller as :class:`grpc.aio.AioRpcError` with the code, message and trailing
``grpc-status-details-bin`` the wire would carry.

Messages are handed over, not copied: no loomflow handler mutates its request, and
the caller never mutates a reply (copying would cost what serialization costs for
large recalls). With :data:`CHECK_REQUESTS` set (the test suite sets it) each request
is serialized before and after its handler and the call fails if the handler
changed it, so a handler that starts mutating its request is caught by the tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, cast

import grpc
from grpc.aio import AbortError, AioRpcError
from grpc.aio import Metadata as AioMetadata
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

PEER = "inprocess"
_NOT_FOUND = "Method not found!"  # what grpc answers for an unknown method
_DEADLINE = "Deadline Exceeded"

Metadata = Iterable[tuple[str, str | bytes]]
CHECK_REQUESTS = False
"""Tests set it: every in-process call then proves its handler left the request as it was."""


class LocalMethods:
    """The wrapped handlers this process's server registered, by full method name (``/pkg.Service/Rpc``)."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        self.services: set[str] = set()

    def add(self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
        self.services.add(service)
        for rpc, handler in handlers.items():
            self._handlers[f"/{service}/{rpc}"] = handler

    def get(self, method: str) -> grpc.RpcMethodHandler[Any, Any] | None:
        return self._handlers.get(method)


class RequestMutated(AssertionError):
    """A handler changed the request it was handed (only raised with ``check_requests``)."""


def rpc_error(code: grpc.StatusCode, details: str, trailing: Metadata = ()) -> AioRpcError:
    return AioRpcError(code, AioMetadata(), AioMetadata(*trailing), details=details)


class _Context:
    """The ``grpc.aio.ServicerContext`` methods loomflow's pipeline and handlers use."""

    __slots__ = ("_auth", "_code", "_deadline", "_details", "_metadata", "_peer", "_trailing")

    def __init__(
        self, metadata: tuple[tuple[str, Any], ...], deadline: float | None, auth: Mapping[str, Any], peer: str = PEER
    ) -> None:
        self._metadata = metadata
        self._peer = peer
        self._deadline = deadline
        self._auth = auth
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._trailing: tuple[tuple[str, Any], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._metadata

    def auth_context(self) -> Mapping[str, Any]:
        return self._auth

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()) -> None:
        self._code, self._details, self._trailing = code, details, tuple(trailing_metadata)
        raise AbortError(f"aborted: {code}")

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def set_trailing_metadata(self, trailing_metadata: Metadata) -> None:
        self._trailing = tuple(trailing_metadata)

    async def send_initial_metadata(self, initial_metadata: Metadata) -> None:
        """Nothing to send: the caller has no headers to wait for."""

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False

    def aborted_error(self) -> AioRpcError:
        return rpc_error(self._code or grpc.StatusCode.UNKNOWN, self._details, self._trailing)


class InProcessChannel:
    """A ``grpc.aio.Channel`` stand-in dispatching to :class:`LocalMethods`.

    ``auth_context`` is what the services see as the peer's verified certificate
    (the caller's own client certificate when the server requires mTLS; empty
    otherwise, as on a plaintext or server-only TLS connection). ``peer`` is what handlers see as the
    caller's address (the multiplexed transport's server passes its stream's).
    """

    def __init__(
        self,
        methods: LocalMethods,
        *,
        traced: bool = False,
        auth_context: Mapping[str, Any] | None = None,
        max_message_bytes: int = 4 * 1024 * 1024,
        peer: str = PEER,
    ) -> None:
        self.methods = methods
        self.peer = peer
        self.traced = traced
        self.auth_context: Mapping[str, Any] = auth_context or {}
        self.max_message_bytes = max_message_bytes
        self._tracer = trace.get_tracer("loomflow.transport.inprocess") if traced else None

    def unary_unary(self, method: str, *_: Any, **__: Any) -> _UnaryUnary:
        return _UnaryUnary(self, method)

    def unary_stream(self, method: str, *_: Any, **__: Any) -> _UnaryStream:
        return _UnaryStream(self, method)

    def stream_unary(self, method: str, *_: Any, **__: Any) -> _Unsupported:
        return _Unsupported(method)

    def stream_stream(self, method: str, *_: Any, **__: Any) -> _Unsupported:
        return _Unsupported(method)

    def as_channel(self) -> grpc.aio.Channel:
        """This channel, typed as what generated stubs take (it implements the methods they call)."""
        return cast(grpc.aio.Channel, self)

    async def close(self, grace: float | None = None) -> None:
        """Nothing to close: calls in flight are tasks that finish or are cancelled by their callers."""

    async def channel_ready(self) -> None:
        """Always ready."""

    # -- shared by the call kinds -------------------------------------------

    def _start(
        self, method: str, request: Any, timeout: float | None, metadata: Metadata | None
    ) -> tuple[grpc.RpcMethodHandler[Any, Any], _Context]:
        handler = self.methods.get(method)
        if handler is None:
            raise rpc_error(grpc.StatusCode.UNIMPLEMENTED, _NOT_FOUND)
        if timeout is not None and timeout <= 0:
            raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, _DEADLINE)
        size = request.ByteSize()
        if size > self.max_message_bytes:  # the client-side check grpc makes before sending
            raise rpc_error(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Sent message larger than max ({size} vs. {self.max_message_bytes})",
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        return handler, _Context(tuple(metadata or ()), deadline, self.auth_context, self.peer)

    def _span(self, method: str) -> trace.Span | None:
        """A server span like the instrumentation library's (the caller's span is its parent, as on the wire)."""
        if self._tracer is None:
            return None
        service, _, rpc = method[1:].partition("/")
        return self._tracer.start_span(
            method,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc},
        )

    def _checked(self, request: Any) -> Callable[[], None]:
        if not CHECK_REQUESTS:
            return _nothing
        before = request.SerializeToString(deterministic=True)

        def check() -> None:
            if request.SerializeToString(deterministic=True) != before:
                raise RequestMutated(f"a handler changed its {type(request).__name__}: in-process calls share it")

        return check


def _nothing() -> None:
    pass


def _finish_span(span: trace.Span | None, code: grpc.StatusCode) -> None:
    if span is None:
        return
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


class _UnaryUnary:
    """``stub.Method(request, timeout=..., metadata=...)``: returns an awaitable call (a task)."""

    def __init__(self, channel: InProcessChannel, method: str) -> None:
        self._channel = channel
        self._method = method

    def __call__(
        self, request: Any, *, timeout: float | None = None, metadata: Metadata | None = None, **_: Any
    ) -> asyncio.Task[Any]:
        return asyncio.get_running_loop().create_task(self._call(request, timeout, metadata))

    async def _call(self, request: Any, timeout: float | None, metadata: Metadata | None) -> Any:  # noqa: ASYNC109  # grpc's call signature
        channel = self._channel
        handler, context = channel._start(self._method, request, timeout, metadata)
        behavior = cast(Callable[[Any, _Context], Awaitable[Any]] | None, handler.unary_unary)  # aio: async
        assert behavior is not None, f"{self._method} is not a unary method"
        check = channel._checked(request)
        span = channel._span(self._method)
        code = grpc.StatusCode.OK
        try:
            with trace.use_span(span, end_on_exit=False) if span is not None else _NO_SPAN:
                async with asyncio.timeout(timeout) as limit:
                    try:
                        response = await behavior(request, context)
                    except AbortError:
                        raise context.aborted_error() from None
                    except Exception as exc:  # noqa: BLE001  # past the pipeline: grpc answers UNKNOWN
                        raise rpc_error(grpc.StatusCode.UNKNOWN, f"Unexpected {type(exc)}: {exc}") from None
        except TimeoutError:
            if not limit.expired():
                raise
            code = grpc.StatusCode.DEADLINE_EXCEEDED
            raise rpc_error(code, _DEADLINE) from None
        except AioRpcError as error:
            code = error.code()
            raise
        finally:
            _finish_span(span, code)
        check()
        return response


class _NoSpan:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


_NO_SPAN = _NoSpan()
_END = object()


class _UnaryStream:
    def __init__(self, channel: InProcessChannel, method: str) -> None:
        self._channel = channel
        self._method = method

    def __call__(
        self, request: Any, *, timeout: float | None = None, metadata: Metadata | None = None, **_: Any
    ) -> StreamCall:
        return StreamCall(self._channel, self._method, request, timeout, metadata)


class StreamCall:
    """A server-streaming call: the handler runs in its own task and hands items over a queue.

    The queue is unbounded: loomflow's one server stream its caller reads
    (WatchApprovals) sends a message per approval event, and the reader consumes
    them as they come. The pump task owns the handler; :meth:`cancel` ends it.
    """

    def __init__(
        self,
        channel: InProcessChannel,
        method: str,
        request: Any,
        timeout: float | None,
        metadata: Metadata | None,
    ) -> None:
        self._items: asyncio.Queue[Any] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._pump(channel, method, request, timeout, metadata))
        self._task.add_done_callback(self._ended)

    async def _pump(
        self,
        channel: InProcessChannel,
        method: str,
        request: Any,
        timeout: float | None,  # noqa: ASYNC109  # the call's deadline, applied inside with asyncio.timeout
        metadata: Metadata | None,
    ) -> None:
        handler, context = channel._start(method, request, timeout, metadata)
        behavior = cast(Callable[[Any, _Context], AsyncIterator[Any]] | None, handler.unary_stream)
        assert behavior is not None, f"{method} is not a server-streaming method"
        span = channel._span(method)
        code = grpc.StatusCode.OK
        try:
            with trace.use_span(span, end_on_exit=False) if span is not None else _NO_SPAN:
                async with asyncio.timeout(timeout) as limit:
                    try:
                        async for item in behavior(request, context):
                            self._items.put_nowait(item)
                    except AbortError:
                        raise context.aborted_error() from None
                    except Exception as exc:  # noqa: BLE001
                        raise rpc_error(grpc.StatusCode.UNKNOWN, f"Unexpected {type(exc)}: {exc}") from None
        except TimeoutError:
            if not limit.expired():
                raise
            code = grpc.StatusCode.DEADLINE_EXCEEDED
            raise rpc_error(code, _DEADLINE) from None
        except AioRpcError as error:
            code = error.code()
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            _finish_span(span, code)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self._items.put_nowait(asyncio.CancelledError())
            return
        error = task.exception()
        self._items.put_nowait(error if error is not None else _END)

    def cancel(self) -> bool:
        return self._task.cancel()

    def done(self) -> bool:
        return self._task.done()

    async def read(self) -> Any:
        item = await self._items.get()
        if item is _END:
            self._items.put_nowait(_END)
            return grpc.aio.EOF
        if isinstance(item, BaseException):
            self._items.put_nowait(item)
            raise item
        return item

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            item = await self.read()
            if item is grpc.aio.EOF:
                return
            yield item


class _Unsupported:
    def __init__(self, method: str) -> None:
        self._method = method

    def __call__(self, *_: Any, **__: Any) -> Any:
        raise rpc_error(grpc.StatusCode.UNIMPLEMENTED, f"{self._method}: no in-process client-streaming calls")


def certificate_auth_context(cert_file: str) -> dict[str, list[bytes]]:
    """The auth context a server verifying ``cert_file`` over mTLS would see (its SANs and CN),
    so a co-hosted caller whose credential is its client certificate is the same principal in process."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    with open(cert_file, "rb") as pem:
        cert = x509.load_pem_x509_certificates(pem.read())[0]
    names: list[bytes] = []
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += [str(v).encode() for v in sans.get_values_for_type(x509.UniformResourceIdentifier)]
        names += [str(v).encode() for v in sans.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        pass
    common = [str(a.value).encode() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return {"x509_subject_alternative_name": names, "x509_common_name": common, "transport_security_type": [b"ssl"]}
