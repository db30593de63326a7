"""Per-tenant admission limits: a token bucket for the request rate and a cap on calls in flight.

One tenant flooding the suite must not starve the others. The kernel pipeline
asks :class:`TenantLimiter` once per call, after the caller is authenticated and
the tenant bound (so forged tokens naming a victim cannot drain the victim's
bucket), and refuses an over-limit call at once with RESOURCE_EXHAUSTED carrying
``google.rpc.RetryInfo``: a server that queued the excess instead would hold a
coroutine and its request per queued call, which is the starvation we prevent.

The state is O(1) per call and bounded: buckets live in an LRU of at most
``max_tenants`` entries (an evicted tenant comes back with a full bucket, which
is what a tenant idle long enough to be evicted would have anyway), and
in-flight counts exist only while a tenant has calls in flight. The server is a
single asyncio event loop, so no lock is needed: every step here is synchronous.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2

from loomflow.kernel.config import ConfigError
from loomflow.kernel.errors import ResourceExhausted
from loomflow.kernel.telemetry import meter, tenant_label

RATE_LIMIT = "rate_limit_per_user"
INFLIGHT_LIMIT = "max_inflight_per_user"


class RateLimited(ResourceExhausted):
    """RESOURCE_EXHAUSTED for a tenant over its rate or concurrency limit, with a retry hint.

    Details: ``ErrorInfo{reason: "RATE_LIMITED", metadata: {limit, retry_after_ms}}``
    and ``RetryInfo{retry_delay}`` (the standard hint gRPC clients read).
    """

    def __init__(self, message: str, limit: str, retry_after_s: float) -> None:
        super().__init__(message, limit=limit)
        self.retry_after_s = retry_after_s

    def details(self) -> list[any_pb2.Any]:
        millis = max(1, round(self.retry_after_s * 1000))
        info = error_details_pb2.ErrorInfo(
            reason="RATE_LIMITED",
            domain="loomflow",
            metadata={"limit": self.limit, "retry_after_ms": str(millis)},
        )
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=millis // 1000, nanos=(millis % 1000) * 1_000_000)
        )
        packed = [any_pb2.Any(), any_pb2.Any()]
        packed[0].Pack(info)
        packed[1].Pack(retry)
        return packed


MAX_RETRY_AFTER_S = 60.0
"""The longest retry hint: a tenant with a very long queue of refused callers (or one that retries
without waiting, pushing its own schedule out) is never told to wait longer than this."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    next_retry: float = 0.0
    """When the next refused caller of this tenant is told to come back (clock time): each refusal
    takes that time and moves it one token later, so the tenant's callers do not return together."""


class TenantLimiter:
    """Token bucket (``rate_per_s`` refill, ``burst`` capacity) and in-flight cap, per tenant.

    ``rate_per_s`` 0 turns the rate limit off; ``max_inflight`` 0 turns the
    concurrency limit off. Callers pair every successful :meth:`enter` with one
    :meth:`leave`.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        max_inflight: int,
        *,
        max_tenants: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s < 0 or max_inflight < 0 or burst < 0:
            raise ConfigError(
                "LOOMFLOW_RATE_LIMIT_PER_USER, LOOMFLOW_RATE_BURST and LOOMFLOW_MAX_INFLIGHT_PER_USER must be ≥ 0"
            )
        if max_tenants < 1:
            raise ConfigError("LOOMFLOW_RATE_LIMIT_MAX_TENANTS must be at least 1")
        self.rate_per_s = float(rate_per_s)
        # A bucket must hold at least one token, or no call could ever pass.
        self.burst = float(max(1, burst)) if rate_per_s > 0 else 0.0
        self.max_inflight = max_inflight
        self.max_tenants = max_tenants
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._inflight: dict[str, int] = {}
        self._refused = meter("loomflow.rpc").create_counter(
            "loomflow_rate_limited", description="calls refused by a per-tenant rate or concurrency limit"
        )

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0 or self.max_inflight > 0

    @property
    def tracked_tenants(self) -> int:
        """Tenants with state held right now (buckets, plus in-flight counts of evicted buckets)."""
        return len(self._buckets.keys() | self._inflight.keys())

    def inflight(self, tenant: str) -> int:
        return self._inflight.get(tenant, 0)

    def enter(self, tenant: str) -> None:
        """Admits one call of ``tenant`` or raises :class:`RateLimited`; admitted calls count as in flight."""
        if self.max_inflight and self._inflight.get(tenant, 0) >= self.max_inflight:
            self._refuse_inflight(tenant)
        if self.rate_per_s:
            wait = self._take_token(tenant)
            if wait:
                self._refuse_rate(tenant, wait)
        if self.max_inflight:
            self._inflight[tenant] = self._inflight.get(tenant, 0) + 1

    def refuse_if_over(self, tenant: str) -> None:
        """Raises :class:`RateLimited` if ``tenant`` is over a limit right now; takes no token, counts nothing.

        For refusing before the costlier steps of admission (validation): it creates no state, so it
        may be asked about a tenant not yet validated; a call it lets through still goes through
        :meth:`enter`.
        """
        if self.max_inflight and self._inflight.get(tenant, 0) >= self.max_inflight:
            self._refuse_inflight(tenant)
        bucket = self._buckets.get(tenant)
        if bucket is not None and self.rate_per_s:
            tokens = min(self.burst, bucket.tokens + (self._clock() - bucket.updated) * self.rate_per_s)
            if tokens < 1.0:
                self._refuse_rate(tenant, (1.0 - tokens) / self.rate_per_s)

    def leave(self, tenant: str) -> None:
        """Ends one admitted call of ``tenant``."""
        if not self.max_inflight:
            return
        left = self._inflight.get(tenant, 0) - 1
        if left > 0:
            self._inflight[tenant] = left
        else:
            self._inflight.pop(tenant, None)

    def allow(self, key: str) -> bool:
        """Takes one token of ``key``'s bucket if it has one; never raises, records nothing (rate only)."""
        return not self.rate_per_s or not self._take_token(key)

    def _bucket(self, tenant: str, now: float) -> _Bucket:
        bucket = self._buckets[tenant] = _Bucket(self.burst, now)
        if len(self._buckets) > self.max_tenants:
            self._buckets.popitem(last=False)  # the least recently seen tenant
        return bucket

    def _take_token(self, tenant: str) -> float:
        """Takes a token: 0.0 when taken, else the seconds until one accrues."""
        now = self._clock()
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._bucket(tenant, now)
        else:
            self._buckets.move_to_end(tenant)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate_per_s)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate_per_s

    def _retry_after(self, tenant: str, earliest_s: float) -> float:
        """The hint for one refused call: the tenant's next free retry time, at least ``earliest_s`` away.

        Takes that time from the tenant's schedule, so the next refused caller is told one token later.
        """
        if not self.rate_per_s:
            return earliest_s  # the in-flight cap alone keeps no per-tenant state to schedule with
        now = self._clock()
        bucket = self._buckets.get(tenant)
        if bucket is None:  # evicted while its calls were in flight
            bucket = self._bucket(tenant, now)
        due = min(max(bucket.next_retry, now + earliest_s), now + MAX_RETRY_AFTER_S)
        bucket.next_retry = due + 1.0 / self.rate_per_s
        return due - now

    def _refuse_inflight(self, tenant: str) -> NoReturn:
        # A slot frees when one of the tenant's calls ends; one token's time is a fair first wait.
        wait = self._retry_after(tenant, 1.0 / self.rate_per_s if self.rate_per_s else 0.1)
        self._refuse(
            tenant, INFLIGHT_LIMIT, f"too many calls in flight for this user (at most {self.max_inflight})", wait
        )

    def _refuse_rate(self, tenant: str, token_in_s: float) -> NoReturn:
        wait = self._retry_after(tenant, token_in_s)
        message = (
            f"rate limit exceeded for this user ({self.rate_per_s:g}/s, burst {self.burst:g}); "
            f"retry in {wait * 1000:.0f} ms"
        )
        self._refuse(tenant, RATE_LIMIT, message, wait)

    def _refuse(self, tenant: str, limit: str, message: str, retry_after_s: float) -> NoReturn:
        self._refused.add(1, {"limit": limit, "user_id": tenant_label(tenant)})
        raise RateLimited(message, limit, retry_after_s)
