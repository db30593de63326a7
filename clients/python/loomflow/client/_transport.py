"""One connection to a loomflow server: channel, bearer token, deadlines, retries, errors."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TypeVar

import grpc
from google.protobuf.message import Message

from loomflow.client.errors import RateLimited, from_rpc_error
from loomflow.v1 import tenancy_pb2

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

TokenSource = str | Callable[[], str] | None
"""A bearer token, or a function returning the current one (for tokens that rotate)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retries within the call's deadline: of idempotent calls that failed with UNAVAILABLE, and of any
    call refused by a rate limit (it did not run)."""

    attempts: int = 4
    base_delay_s: float = 0.05
    max_delay_s: float = 2.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay_s, self.base_delay_s * 2**attempt) * (0.5 + random.random() / 2))


NO_RETRY = RetryPolicy(attempts=1)


def scope(user_id: str | None = None, anonymous: bool = False) -> tenancy_pb2.UserScope:
    """The wire scope: exactly one of ``user_id`` or ``anonymous=True``."""
    if anonymous:
        if user_id is not None:
            raise ValueError("pass either user_id or anonymous=True, not both")
        return tenancy_pb2.UserScope(anonymous=tenancy_pb2.Anonymous())
    if user_id is None:
        raise ValueError("pass user_id=... (or anonymous=True for the anonymous partition)")
    return tenancy_pb2.UserScope(user_id=user_id)


def tls_credentials(
    ca_file: str | Path | None = None, cert_file: str | Path | None = None, key_file: str | Path | None = None
) -> grpc.ChannelCredentials:
    """TLS credentials from PEM files: the CA to trust (None: the system roots) and, for mTLS, a client pair."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("a client certificate needs its private key (and the other way round)")
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes() if ca_file else None,
        private_key=Path(key_file).read_bytes() if key_file else None,
        certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
    )


class Connection:
    """A channel plus how to call through it. Shared by every client made from it."""

    def __init__(
        self,
        target: str | grpc.aio.Channel,
        *,
        token: TokenSource = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        tls: bool = False,
        options: list[tuple[str, int | str]] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """``tls=True`` trusts the system roots; ``credentials`` (see :func:`tls_credentials`) a CA or mTLS."""
        if isinstance(target, str):
            if credentials is not None or tls:
                creds = credentials or grpc.ssl_channel_credentials()
                self.channel = grpc.aio.secure_channel(target, creds, options=options)
            else:
                self.channel = grpc.aio.insecure_channel(target, options=options)
            self._owns_channel = True
        else:
            self.channel = target
            self._owns_channel = False
        self._token = token
        self.timeout = timeout
        self.retry = retry or RetryPolicy()

    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        token = self._token() if callable(self._token) else self._token
        return (("authorization", f"Bearer {token}"),) if token else None

    async def unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        *,
        idempotent: bool,
        deadline_s: float | None = None,
    ) -> Resp:
        """Calls once, or (idempotent calls) until it succeeds, fails for good, or the deadline passes."""
        deadline = time.monotonic() + (self.timeout if deadline_s is None else deadline_s)
        attempts = self.retry.attempts if idempotent else 1
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                return await method(request, metadata=self.metadata(), timeout=max(remaining, 0.001))
            except grpc.aio.AioRpcError as error:
                attempt += 1
                typed = from_rpc_error(error)
                delay = self.retry.delay(attempt - 1)
                if isinstance(typed, RateLimited):
                    # Refused before anything ran: safe to retry any call, once the server's hint has passed.
                    retry, delay = attempt < self.retry.attempts, max(delay, typed.retry_after_s)
                else:
                    retry = typed.retryable and attempt < attempts
                if not retry or time.monotonic() + delay >= deadline:
                    raise typed from None
            await asyncio.sleep(delay)

    async def stream(
        self,
        method: grpc.aio.UnaryStreamMultiCallable[Req, Resp],
        request: Req,
        *,
        deadline_s: float | None = None,
    ) -> AsyncIterator[Resp]:
        """A server stream's messages; ``deadline_s=None`` means no deadline (watches run until cancelled)."""
        call = method(request, metadata=self.metadata(), timeout=deadline_s)
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        if self._owns_channel:
            await self.channel.close()


class ServiceClient:
    """Base of the typed service clients: owns (or shares) a :class:`Connection`."""

    def __init__(
        self,
        target: str | grpc.aio.Channel | Connection,
        *,
        token: TokenSource = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        tls: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        if isinstance(target, Connection):
            self._connection = target
            self._owns = False
        else:
            self._connection = Connection(
                target, token=token, timeout=timeout, retry=retry, tls=tls, credentials=credentials
            )
            self._owns = True
        self._bind(self._connection.channel)

    def _bind(self, channel: grpc.aio.Channel) -> None:
        """Makes the service's stub on the channel (once per client)."""

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._connection.channel

    async def close(self) -> None:
        if self._owns:
            await self._connection.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
