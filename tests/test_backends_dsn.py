"""One DSN parser: a DSN's secrets never reach a repr, an error message or a log line.

The outage path is the real one: a pool opened against a port nothing listens on, and a store started
on it, with a password in the DSN.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import pytest

from loomflow.budget.ledger.postgres import PostgresLedger
from loomflow.kernel.backends import dsn as dsns
from loomflow.kernel.backends import postgres
from loomflow.kernel.config import ConfigError
from loomflow.kernel.errors import Unavailable
from loomflow.memory.store import open_store
from loomflow.testing.processes import free_port
from tests.support.backends import postgres_dsn

SECRET = "s3cr3t-pw"


def with_password(port: int, *, scheme: str = "postgres") -> str:
    return f"{scheme}://loomflow:{SECRET}@127.0.0.1:{port}/loomflow?sslpassword={SECRET}&search_path=app"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("postgres://u:pw@db:5432/x", "postgres://u:***@db:5432/x"),
        ("postgresql://u:p@ss:w@db/x?sslmode=require", "postgresql://u:***@db/x?sslmode=require"),
        ("redis://:pw@cache:6379/0?key_prefix=a", "redis://:***@cache:6379/0?key_prefix=a"),
        ("rediss://default:pw@cache/0", "rediss://default:***@cache/0"),
        ("postgres://db/x?user=u&password=pw&sslpassword=k", "postgres://db/x?user=u&password=***&sslpassword=***"),
        ("postgres://u@db/x", "postgres://u@db/x"),
        ("sqlite:///var/lib/memory.db", "sqlite:///var/lib/memory.db"),
        ("connect to postgres://u:pw@db/x failed", "connect to postgres://u:***@db/x failed"),
    ],
)
def test_redact_hides_passwords_and_secret_options_only(raw: str, shown: str) -> None:
    assert dsns.redact(raw) == shown


def test_a_parsed_dsn_shows_no_secret_in_str_or_repr() -> None:
    parsed = dsns.parse(with_password(5432), "LOOMFLOW_MEMORY_DSN")
    for text in (str(parsed), repr(parsed), f"{parsed}", f"{parsed!r}", repr([parsed])):
        assert SECRET not in text, text
    assert parsed.is_postgres
    assert parsed.options["search_path"] == "app"
    assert SECRET in parsed.secret_url, "the driver still gets the real DSN"


def test_schemes_options_and_paths() -> None:
    assert dsns.parse("POSTGRESQL://db/x").is_postgres
    assert dsns.parse("rediss://cache/0").is_redis
    assert dsns.scheme_of("") == ""
    assert dsns.parse("sqlite:///abs/file.db").file_path("sqlite:///x.db") == "/abs/file.db"
    with pytest.raises(ConfigError, match="LOOMFLOW_X: sqlite:// needs a file path"):
        dsns.parse("sqlite://", "LOOMFLOW_X").file_path("sqlite:///x.db")
    rest, prefix = dsns.parse("redis://:pw@cache/0?key_prefix=lf&db=1").without_option("key_prefix", "dflt")
    assert (rest.secret_url, prefix) == ("redis://:pw@cache/0?db=1", "lf")
    assert dsns.parse("redis://cache/0").without_option("key_prefix", "dflt")[1] == "dflt"
    moved = dsns.parse("postgres://db/x?search_path=a&sslmode=disable").with_search_path("b")
    assert moved.options == {"sslmode": "disable", "search_path": "b"}


def test_an_unknown_scheme_error_hides_the_password() -> None:
    error = dsns.parse(with_password(1, scheme="mysql"), "LOOMFLOW_POLICY_DSN").unknown_scheme("postgres://…")
    assert "LOOMFLOW_POLICY_DSN" in str(error)
    assert SECRET not in str(error)


async def test_an_unreachable_postgres_is_unavailable_and_its_message_hides_the_password() -> None:
    with pytest.raises(Unavailable) as caught:
        await postgres.open_pool(with_password(free_port()), "test database (Postgres)", max_size=1)
    assert caught.value.message.startswith("test database (Postgres) unavailable: cannot reach it"), caught.value
    assert SECRET not in caught.value.message
    assert SECRET not in repr(caught.value)


async def test_stores_failing_to_connect_log_and_raise_without_the_password(caplog: pytest.LogCaptureFixture) -> None:
    dsn = with_password(free_port())
    caplog.set_level(logging.DEBUG)
    ledger = PostgresLedger(dsn, pool_size=1)
    await ledger.start()  # starts anyway and logs the outage
    with pytest.raises(Unavailable) as ledger_error:
        await ledger.migrate()
    await ledger.close()
    store = open_store(dsn, "/nonexistent")
    with pytest.raises(Unavailable) as store_error:
        await store.start()
    await store.close()
    assert "budget ledger" in caplog.text, "the start-up outage was logged"
    for text in (caplog.text, ledger_error.value.message, store_error.value.message):
        assert SECRET not in text


def _factories() -> dict[str, Callable[[str], object]]:
    from loomflow.agent.store import open_agent_store
    from loomflow.audit.sink import open_sink
    from loomflow.budget.ledger import open_ledger
    from loomflow.policy.store import open_store as open_policy_store

    return {
        "LOOMFLOW_MEMORY_DSN": lambda dsn: open_store(dsn, "/nonexistent"),
        "LOOMFLOW_POLICY_DSN": lambda dsn: open_policy_store(dsn, "/nonexistent"),
        "LOOMFLOW_AGENT_STORE_DSN": lambda dsn: open_agent_store(dsn, "/nonexistent"),
        "LOOMFLOW_BUDGET_DSN": open_ledger,
        "LOOMFLOW_AUDIT_DSN": open_sink,
    }


@pytest.mark.parametrize("setting", sorted(_factories()))
def test_every_factory_refuses_an_unknown_scheme_without_showing_the_password(setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _factories()[setting](with_password(1, scheme="mysql"))
    assert SECRET not in str(caught.value)
    assert "***" in str(caught.value), "the DSN is shown, redacted, so the operator sees which one"


@pytest.mark.postgres
async def test_a_postgres_that_refuses_the_login_is_a_configuration_error_without_the_password() -> None:
    parts = urlsplit(postgres_dsn())
    host = parts.netloc.rpartition("@")[2]
    refused = urlunsplit(parts._replace(netloc=f"loomflow:{SECRET}@{host}", path="/no_such_database_here"))
    with pytest.raises(ConfigError, match=r"^test database \(Postgres\): the server refused the connection") as caught:
        await postgres.open_pool(refused, "test database (Postgres)", max_size=1)
    assert SECRET not in str(caught.value)
