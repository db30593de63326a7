"""The real Postgres and Redis that scripts/services.sh starts, as pytest sees them.

loomflow.testing.databases reads their DSNs (LOOMFLOW_TEST_POSTGRES_DSN, LOOMFLOW_TEST_REDIS_URL).
A local run without them skips those tests loudly (the reason names the command); under CI
(CI=true) a missing backend fails instead, so it can never be skipped silently there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from loomflow.testing import databases


def required(read: Callable[[], str]) -> str:
    try:
        return read()
    except databases.BackendUnavailable as missing:
        if os.environ.get("CI"):
            pytest.fail(str(missing))
        pytest.skip(str(missing))


def postgres_dsn() -> str:
    return required(databases.postgres_dsn)


def redis_url() -> str:
    return required(databases.redis_url)


def require(backend: str) -> None:
    """Skips (or, under CI, fails) a test whose backend's server is not running."""
    if backend == "postgres":
        postgres_dsn()
    elif backend == "redis":
        redis_url()


def postgres_schema(name: str) -> contextlib.AbstractAsyncContextManager[str]:
    """loomflow.testing.databases.postgres_schema, skipped when Postgres is not running."""
    return databases.postgres_schema(name, postgres_dsn())


def isolated(
    backend: str, data_dir: Path, name: str, *, key_prefix: bool = True
) -> contextlib.AbstractAsyncContextManager[str]:
    """loomflow.testing.databases.isolated_dsn, skipped when the backend's server is not running."""
    require(backend)
    return databases.isolated_dsn(backend, data_dir, name, key_prefix=key_prefix)
