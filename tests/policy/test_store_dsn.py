"""Which store a DSN opens, and clear errors for the ones that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from loomflow.kernel.config import ConfigError
from loomflow.policy.store import open_store
from loomflow.policy.store.postgres import PostgresStore
from loomflow.policy.store.sqlite import SqliteStore


async def test_an_empty_dsn_is_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    store = open_store("", tmp_path)
    assert isinstance(store, SqliteStore)
    await store.start()
    await store.close()
    assert (tmp_path / "policy.db").exists()


def test_sqlite_and_postgres_dsns_choose_their_store(tmp_path: Path) -> None:
    assert isinstance(open_store(f"sqlite://{tmp_path}/p.db", tmp_path), SqliteStore)
    assert isinstance(open_store("postgres://u@127.0.0.1:1/db", tmp_path), PostgresStore)
    assert isinstance(open_store("postgresql://u@127.0.0.1:1/db", tmp_path), PostgresStore)


@pytest.mark.parametrize(("dsn", "words"), [("redis://x", "unknown scheme"), ("sqlite://", "needs a file path")])
def test_unusable_dsns_name_the_setting(dsn: str, words: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LOOMFLOW_POLICY_DSN") as caught:
        open_store(dsn, tmp_path)
    assert words in str(caught.value)
