"""Each backend knob's default is declared once: the service `Settings` take theirs from the options
dataclass the backend factories read, so a process configured by nothing and a backend opened with
no options behave alike. These tests fail if the two declarations drift apart again."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from loomflow.budget import service as budget
from loomflow.budget.ledger import LedgerOptions
from loomflow.memory import service as memory
from loomflow.memory.recall.factory import EmbedderOptions
from loomflow.memory.store import StoreOptions
from loomflow.policy import service as policy
from loomflow.policy import store as policy_store


def differing(built: Any, declared: Any) -> dict[str, tuple[Any, Any]]:
    return {
        f.name: (getattr(built, f.name), getattr(declared, f.name))
        for f in dataclasses.fields(declared)
        if getattr(built, f.name) != getattr(declared, f.name)
    }


@pytest.mark.parametrize(
    ("name", "built", "declared"),
    [
        ("memory store", memory.store_options(memory.Settings()), StoreOptions()),
        ("memory embedder", memory.embedder_options(memory.Settings()), EmbedderOptions()),
        ("budget ledger", budget.ledger_options(budget.Settings()), LedgerOptions()),
    ],
)
def test_default_settings_give_the_backends_their_own_defaults(name: str, built: Any, declared: Any) -> None:
    assert not differing(built, declared), (
        f"{name}: the settings' defaults and the options dataclass disagree (settings, options): "
        f"{differing(built, declared)}; take the settings default from the options dataclass"
    )


def test_the_settings_fields_take_their_defaults_from_the_options_declaration() -> None:
    """Changing an options default changes the setting's: the settings name no literal of their own."""
    assert memory.Settings().max_users == StoreOptions.max_users
    assert memory.Settings().sqlite_mmap_bytes == StoreOptions.sqlite_mmap_bytes
    assert memory.Settings().embedder == EmbedderOptions.kind
    assert budget.Settings().max_kept_reservations_per_user == LedgerOptions.max_kept_per_user
    assert budget.Settings().retention_seconds * 1000 == LedgerOptions.retention_ms


def test_the_policy_store_and_its_settings_share_one_pool_size_default() -> None:
    default = inspect.signature(policy_store.open_store).parameters["pool_size"].default
    assert policy.Settings().pool_size == default == policy_store.POOL_SIZE
