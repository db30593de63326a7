"""Audit fixtures: fresh keys, and one isolated log per test on every sink.

File isolation: a folder under the test's tmp_path. Postgres isolation: a
unique schema per test (the DSN's ``search_path``), dropped afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loomflow.audit.core import AuditLog
from loomflow.audit.keys import AuditKeys, load_keys
from loomflow.audit.sink import open_sink
from tests.support import backends

SINKS = [
    pytest.param("file", id="file"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@dataclass(frozen=True)
class KeyTexts:
    """The three keys as configuration text (what LOOMFLOW_AUDIT_*_KEY hold)."""

    hmac_key: str
    signing_key: str
    payload_key: str

    def settings(self) -> dict[str, str]:
        return {"hmac_key": self.hmac_key, "signing_key": self.signing_key, "payload_key": self.payload_key}

    def env(self) -> dict[str, str]:
        return {f"LOOMFLOW_AUDIT_{name.upper()}": value for name, value in self.settings().items()}

    def load(self) -> AuditKeys:
        return load_keys(self.hmac_key, self.signing_key, self.payload_key, insecure=False)


def fresh_key_texts() -> KeyTexts:
    return KeyTexts(secrets.token_hex(32), secrets.token_hex(32), secrets.token_hex(32))


@pytest.fixture
def key_texts() -> KeyTexts:
    return fresh_key_texts()


@pytest.fixture
def keys(key_texts: KeyTexts) -> AuditKeys:
    return key_texts.load()


@pytest.fixture
async def postgres_schema_dsn(unique: str) -> AsyncIterator[str]:
    """A DSN whose tables live in a schema of their own, dropped after the test."""
    async with backends.postgres_schema(f"audit_test_{unique}") as dsn:
        yield dsn


@pytest.fixture(params=SINKS)
def sink_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def dsn(sink_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """Where this test's log lives, on the parametrized sink."""
    if sink_name == "file":
        yield f"file://{tmp_path / 'audit'}"
    else:
        yield request.getfixturevalue("postgres_schema_dsn")


def make_log(dsn: str, keys: AuditKeys, **options: float) -> AuditLog:
    return AuditLog(
        open_sink(dsn),
        keys,
        max_batch=int(options.get("max_batch", 1024)),
        checkpoint_interval=options.get("checkpoint_interval", 0.0),
    )


@pytest.fixture
async def audit_log(dsn: str, keys: AuditKeys) -> AsyncIterator[AuditLog]:
    log = make_log(dsn, keys)
    await log.start()
    try:
        yield log
    finally:
        await log.stop()
