"""Opening Redis (redis-py asyncio). Clients connect lazily: a Redis that is down cannot stop start-up;
its calls then raise ``Unavailable`` through :func:`~loomflow.kernel.backends.errors.unavailable_on_outage`."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff


def open_client(
    url: str,
    *,
    decode_responses: bool,
    max_connections: int | None = None,
    wait_for_connection: float = 10.0,
    connect_timeout: float = 5.0,
    socket_timeout: float | None = None,
    retries: int = 0,
) -> aioredis.Redis:
    """A client for ``url``. With ``max_connections``, calls beyond it wait up to ``wait_for_connection`` s for a
    free connection instead of failing; ``retries`` re-sends a call after a dropped connection (brief backoff)."""
    options: dict[str, Any] = {"socket_connect_timeout": connect_timeout, "socket_timeout": socket_timeout}
    if retries:  # otherwise redis-py's own default
        options["retry"] = Retry(ExponentialBackoff(cap=0.2, base=0.02), retries)
    if max_connections is None:
        client: aioredis.Redis = aioredis.from_url(url, decode_responses=decode_responses, **options)
        return client
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=wait_for_connection, decode_responses=decode_responses, **options
    )
    return aioredis.Redis(connection_pool=pool, **{k: v for k, v in options.items() if k == "retry"})
