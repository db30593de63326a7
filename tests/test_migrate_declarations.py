"""`loomflow migrate` is one generic path: each service module declares its migrations to the kernel's
runner (``MIGRATIONS``), and the command only iterates over what the configured services declare."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from loomflow import suite
from loomflow.kernel.backends import migrations

MIGRATE_CLI = Path(suite.__file__).parent / "cli" / "migrate.py"


def test_every_service_declares_the_setting_that_names_its_database() -> None:
    for name in suite.SERVICE_NAMES:
        module = suite.service_module(name)
        declared = getattr(module, "MIGRATIONS", None)
        assert isinstance(declared, migrations.Declared), f"loomflow.{name}.service declares no MIGRATIONS"
        fields = {f.name for f in dataclasses.fields(module.Settings)}
        assert declared.setting in fields, f"{name}: MIGRATIONS names {declared.setting!r}, not one of its settings"


def test_a_backend_that_is_not_postgres_has_nothing_to_migrate() -> None:
    module = suite.service_module("memory")
    assert module.MIGRATIONS.database(module.Settings(dsn="sqlite:///x.db")) is None
    assert module.MIGRATIONS.database(module.Settings(dsn="postgres://u@h/db")) == "postgres://u@h/db"


def test_the_migrate_command_names_no_service() -> None:
    tree = ast.parse(MIGRATE_CLI.read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)] + [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    ]
    named = [m for m in imported for s in suite.SERVICE_NAMES if m.startswith(f"loomflow.{s}")]
    assert not named, f"cli/migrate.py imports services itself: {named}"
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert not [s for s in strings if s in suite.SERVICE_NAMES], "cli/migrate.py names a service"
