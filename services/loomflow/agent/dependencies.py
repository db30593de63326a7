"""The Agent's connections to Memory, Budget, Policy and Audit.

One channel per distinct address and one stub per service, made once when the
service starts and reused by every run (a stub or channel per call would cost
more than the call). Every call presents the Agent's service credential and a
deadline derived from the run's remaining time, capped per call.

Failures of a dependency become domain errors naming the dependency, so the
caller sees UNAVAILABLE / DEADLINE_EXCEEDED rather than INTERNAL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from loomflow.kernel import errors
from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.kernel.tls import ClientTls, secure_or_insecure_channel
from loomflow.kernel.transport.inprocess import InProcessChannel
from loomflow.kernel.transport.mux_client import MuxChannel, MuxSettings
from loomflow.v1 import (
    audit_pb2_grpc,
    budget_pb2_grpc,
    memory_pb2_grpc,
    policy_pb2_grpc,
)

log = logging.getLogger("loomflow.agent")

Metadata = tuple[tuple[str, str], ...]

SERVICE_SUBJECT = "loomflow-agent"
_TOKEN_TTL_S = 3600
_REFRESH_BEFORE_S = 600
_TLS_CHECK_INTERVAL_S = 10.0
ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
IN_PROCESS = "(in process)"
"""The address of a dependency hosted in this process and called through its pipeline without gRPC."""


class ServiceCredential:
    """The bearer token the Agent presents to the internal services.

    A configured token (``LOOMFLOW_AUTH_SERVICE_TOKEN``) is used as is; otherwise
    one is minted from the configured signing key and re-minted before it
    expires. With neither no token is sent: insecure development mode, or mTLS,
    where the Agent's client certificate is its credential.
    """

    def __init__(self, auth: AuthSettings, tokenless: bool) -> None:
        self._auth = auth
        self._static = auth.service_token
        self._token_file = TokenFile(auth.service_token_file) if auth.service_token_file else None
        self._can_mint = bool(auth.jwt_secret or auth.jwt_private_key_file)
        if not self._static and not self._token_file and not self._can_mint and not tokenless:
            raise ValueError(
                "the agent needs a credential for the internal services: set LOOMFLOW_AUTH_SERVICE_TOKEN, "
                "a signing key (LOOMFLOW_AUTH_JWT_SECRET or LOOMFLOW_AUTH_JWT_PRIVATE_KEY_FILE), "
                "or a client certificate (LOOMFLOW_AGENT_TLS_CERT)"
            )
        self._metadata: Metadata = ()
        self._refresh_at = 0.0

    def metadata(self) -> Metadata:
        if self._token_file is not None:
            return self._token_file.metadata()
        if self._static:
            if not self._metadata:
                self._metadata = (("authorization", f"Bearer {self._static}"),)
            return self._metadata
        if not self._can_mint:
            return ()
        now = time.monotonic()
        if now >= self._refresh_at:
            token = mint_token(self._auth, SERVICE_SUBJECT, Role.SERVICE, ttl_seconds=_TOKEN_TTL_S)
            self._metadata = (("authorization", f"Bearer {token}"),)
            self._refresh_at = now + _TOKEN_TTL_S - _REFRESH_BEFORE_S
        return self._metadata


class TokenFile:
    """A service token kept in a file by its issuer (short-lived, renewed in place: a projected
    ServiceAccount token, a Vault agent, an OIDC client-credentials sidecar); re-read when it changes."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._stamp: tuple[int, int] = (-1, -1)
        self._metadata: Metadata = ()
        self.metadata()  # fails fast on a missing file

    def metadata(self) -> Metadata:
        try:
            st = os.stat(self._path)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                token = Path(self._path).read_text().strip()
                if token:
                    self._metadata, self._stamp = (("authorization", f"Bearer {token}"),), stamp
        except OSError as error:
            if not self._metadata:
                raise ValueError(f"LOOMFLOW_AUTH_SERVICE_TOKEN_FILE: {error}") from None
            log.warning("cannot re-read the service token file, keeping the previous token: %s", error)
        return self._metadata


@dataclass(frozen=True)
class Addresses:
    memory: str
    budget: str
    policy: str
    audit: str


class Dependencies:
    """Channels and stubs to the four services, shared by every run of this process."""

    memory: memory_pb2_grpc.MemoryServiceAsyncStub
    budget: budget_pb2_grpc.BudgetServiceAsyncStub
    policy: policy_pb2_grpc.PolicyServiceAsyncStub
    audit: audit_pb2_grpc.AuditServiceAsyncStub
    _retired: list[asyncio.Future[None]]

    def __init__(
        self,
        addresses: Addresses,
        credential: ServiceCredential,
        call_timeout_s: float,
        max_message_bytes: int = 4 * 1024 * 1024,
        tls: ClientTls | None = None,
        local: InProcessChannel | None = None,
        mux: MuxSettings | None = None,
        traced: bool = False,
    ) -> None:
        self.addresses = addresses
        self.local = local
        self.mux = mux  # set: unary calls to other processes travel multiplexed (kernel/transport/mux_client.py)
        self.traced = traced
        self.max_message_bytes = max_message_bytes
        self.credential = credential
        self.call_timeout_s = call_timeout_s
        self.tls = tls or ClientTls()
        self._options: list[tuple[str, int | str]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # A dependency that restarts must be used again at once: gRPC's default reconnect
            # backoff grows to 120 s, which kept the Agent failing for seconds after a crashed
            # service was back (bench/faults.py). Reconnecting a dead loopback/cluster peer at
            # most once a second costs nothing.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            # Per-call balancing: with a `dns:///` target naming a headless Service (or an
            # `ipv4:a,b,c` list) every resolved replica gets a subchannel and calls rotate over
            # them; the servers' maximum connection age makes the channel re-resolve, so new
            # replicas get traffic too. A single-address target behaves as before.
            ("grpc.service_config", ROUND_ROBIN),
        ]
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._muxed: dict[str, MuxChannel] = {}
        self._retired = []
        self._tls_stamps = self.tls.stamps()
        self._tls_checked = time.monotonic()
        self._open_channels()

    def _open_channels(self) -> None:
        addresses = self.addresses
        wanted = {addresses.memory, addresses.budget, addresses.policy, addresses.audit}
        if IN_PROCESS in wanted and self.local is None:
            raise ValueError("a dependency is in this process but no in-process channel was given")
        self._channels = {
            address: secure_or_insecure_channel(address, self.tls, self._options) for address in wanted - {IN_PROCESS}
        }
        if self.mux is not None:
            self._muxed = {
                address: MuxChannel(channel, self.mux, max_message_bytes=self.max_message_bytes, traced=self.traced)
                for address, channel in self._channels.items()
            }
        self.memory = memory_pb2_grpc.MemoryServiceStub(self._channel(addresses.memory))
        self.budget = budget_pb2_grpc.BudgetServiceStub(self._channel(addresses.budget))
        self.policy = policy_pb2_grpc.PolicyServiceStub(self._channel(addresses.policy))
        self.audit = audit_pb2_grpc.AuditServiceStub(self._channel(addresses.audit))

    def _channel(self, address: str) -> grpc.aio.Channel:
        if address == IN_PROCESS and self.local is not None:
            return self.local.as_channel()
        muxed = self._muxed.get(address)
        return muxed.as_channel() if muxed is not None else self._channels[address]

    def _reload_tls_if_changed(self) -> None:
        """New channels once the CA or client certificate files were rewritten (cert-manager rotation).

        Channel credentials are read once, so rotated files need new channels. Checked when a call reads
        :attr:`metadata` (at most every few seconds); the calls after that use the new channels, and
        calls already on the old ones finish (those close after one call timeout)."""
        now = time.monotonic()
        if now - self._tls_checked < _TLS_CHECK_INTERVAL_S:
            return
        self._tls_checked = now
        stamps = self.tls.stamps()
        if stamps == self._tls_stamps:
            return
        old: list[grpc.aio.Channel | MuxChannel] = [*self._muxed.values(), *self._channels.values()]
        try:
            self._open_channels()
        except (OSError, ValueError) as error:
            log.warning("TLS files changed but cannot be read yet: %s", error)
            return
        self._tls_stamps = stamps
        log.info("reloaded TLS client certificates")
        self._retired.append(asyncio.ensure_future(_close_later(old, self.call_timeout_s)))

    @property
    def metadata(self) -> Metadata:
        if self.tls.enabled:
            self._reload_tls_if_changed()
        return self.credential.metadata()

    def timeout(self, deadline: float) -> float:
        """The deadline of one dependency call: the run's remaining time, capped per call."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise errors.DeadlineExceeded("the run's deadline passed")
        return min(remaining, self.call_timeout_s)

    async def close(self) -> None:
        for task in self._retired:
            task.cancel()
        for muxed in self._muxed.values():
            await muxed.close()
        await asyncio.gather(*(channel.close() for channel in self._channels.values()))


async def _close_later(channels: list[grpc.aio.Channel | MuxChannel], grace_s: float) -> None:
    await asyncio.sleep(grace_s)
    await asyncio.gather(*(channel.close() for channel in channels))


_PASSED_THROUGH: dict[grpc.StatusCode, type[errors.ServiceError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.ABORTED: errors.Aborted,
}


def dependency_error(service: str, error: grpc.aio.AioRpcError) -> errors.ServiceError:
    """What the Agent's caller sees when a call to ``service`` failed.

    Bad input and deadlines keep their code; anything else (the service is down,
    refused our credential, or failed) is UNAVAILABLE naming the service: the run
    cannot go on, and retrying later may succeed.
    """
    code = error.code()
    message = f"{service} service: {error.details() or code.name}"
    kind: type[errors.ServiceError] | None = _PASSED_THROUGH.get(code)
    if kind is not None:
        return kind(message)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        log.error("the %s service refused the agent's credential: %s", service, error.details())
        return errors.Unavailable(f"{service} service refused the agent's credential")
    return errors.Unavailable(message)
