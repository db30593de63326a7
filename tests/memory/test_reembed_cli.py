"""``loomflow memory reembed``: re-embeds every tenant with the configured embedder, shows and saves progress."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from loomflow.cli import main
from loomflow.memory.models import EpisodeDraft, RecallQuery, now_micros
from loomflow.memory.recall.embedding import HashingEmbedder
from loomflow.memory.recall.local import WordLlamaEmbedder
from loomflow.memory.store.sqlite import SQLiteStore


async def _remember(path: Path, tenant: str, texts: list[str]) -> None:
    store = SQLiteStore(path, HashingEmbedder())
    await store.start()
    await store.remember_many(tenant, [EpisodeDraft("s", text, "ok") for text in texts], now_micros())
    await store.close()


async def _recall(path: Path, tenant: str, text: str) -> list[str]:
    store = SQLiteStore(path, WordLlamaEmbedder(64))
    await store.start()
    try:
        return [h.episode.input for h in await store.recall(tenant, RecallQuery(text=text, limit=3))]
    finally:
        await store.close()


def test_reembed_all_tenants_reports_progress_and_saves_the_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "memory.db"
    asyncio.run(_remember(database, "alice", ["we were gardening and planting tomatoes", "tax return filed"]))
    asyncio.run(_remember(database, "bob", ["my physician prescribed rest"]))
    assert asyncio.run(_recall(database, "alice", "vegetable patch")) == [], "hashing vectors are not compared"

    flags = ["--data-dir", str(tmp_path), "--memory-embedder", "wordllama-64", "--page", "1"]
    assert main(["memory", "reembed", "--all-tenants", *flags]) == 0

    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == "reembed[wordllama-64]: 2 tenants finished, 3 episodes re-embedded; done"
    assert len(lines) >= 4, "a line per page"
    saved = json.loads((tmp_path / "memory-reembed-wordllama-64.json").read_text())
    assert saved["finished"]
    assert (saved["tenant"], saved["episodes"]) == ("bob", 3)
    assert asyncio.run(_recall(database, "alice", "vegetable patch"))[0] == "we were gardening and planting tomatoes"
    assert asyncio.run(_recall(database, "bob", "doctor"))[0] == "my physician prescribed rest"


def test_reembed_needs_a_tenant_or_all_tenants(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["memory", "reembed", "--data-dir", str(tmp_path)])
