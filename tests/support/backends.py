"""The real Postgres and Redis that scripts/services.sh starts.

Their DSNs come from LOOMFLOW_TEST_POSTGRES_DSN and LOOMFLOW_TEST_REDIS_URL. A
local run without them skips those tests loudly (the reason names the command);
under CI (CI=true) a missing backend fails instead, so it can never be skipped
silently there.
"""

from __future__ import annotations

import os

import pytest

START_HINT = 'start them with: eval "$(scripts/services.sh start)"'


def require_env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if value:
        return value
    message = f"{what} not available: {name} is unset; {START_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def postgres_dsn() -> str:
    return require_env("LOOMFLOW_TEST_POSTGRES_DSN", "Postgres")


def redis_url() -> str:
    return require_env("LOOMFLOW_TEST_REDIS_URL", "Redis")
