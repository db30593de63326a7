"""Heavy backends and provider SDKs are extras: a DSN or model that needs a missing one fails with
one message naming the setting and the extra, never a ModuleNotFoundError from a backend module.

A library is made missing the way Python itself records an absent module (``sys.modules[name] =
None``: ``import`` raises ModuleNotFoundError and ``importlib.util.find_spec`` answers None). CI
also checks it for real: .ci/run installs the server wheel without extras in a fresh venv and
starts it with a postgres:// DSN.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from loomflow.agent.models import ModelCatalog, ProviderSettings
from loomflow.audit.sink import open_sink
from loomflow.budget.ledger import open_ledger
from loomflow.kernel import extras
from loomflow.kernel.errors import FailedPrecondition
from loomflow.memory.store import open_store as open_memory
from loomflow.policy.store import open_store as open_policy

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
TOOLING_EXTRAS = {"dev", "bench"}


def hide(monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    for module in extras.EXTRAS[extra]:
        monkeypatch.setitem(sys.modules, module, None)


def test_extras_table_matches_pyproject_and_the_installed_distributions() -> None:
    declared = {name: deps for name, deps in PYPROJECT["optional-dependencies"].items() if name not in TOOLING_EXTRAS}
    assert set(declared) == set(extras.EXTRAS), "loomflow.kernel.extras.EXTRAS and pyproject's extras differ"
    providers = importlib.metadata.packages_distributions()
    for name, requirements in declared.items():
        distributions = {Requirement(r).name.lower() for r in requirements}
        for module in extras.EXTRAS[name]:
            installed = {d.lower() for d in providers.get(module, [])}
            assert installed & distributions, f"module {module} is not installed by loomflow[{name}] ({distributions})"
    core = {Requirement(r).name.lower() for r in PYPROJECT["dependencies"]}
    heavy = {Requirement(r).name.lower() for name in declared for r in declared[name]}
    assert not core & heavy, f"an extra's package is also a core dependency: {core & heavy}"


OPENERS: list[tuple[str, str, Callable[[Path], object]]] = [
    ("postgres", "LOOMFLOW_MEMORY_DSN", lambda d: open_memory("postgres://u@h/db", d)),
    ("redis", "LOOMFLOW_MEMORY_DSN", lambda d: open_memory("redis://h:6379/0", d)),
    ("chroma", "LOOMFLOW_MEMORY_DSN", lambda d: open_memory(f"chroma://{d}/chroma", d)),
    ("postgres", "LOOMFLOW_POLICY_DSN", lambda d: open_policy("postgresql://u@h/db", d)),
    ("postgres", "LOOMFLOW_AUDIT_DSN", lambda d: open_sink("postgres://u@h/db")),
    ("redis", "LOOMFLOW_BUDGET_DSN", lambda d: open_ledger("rediss://h:6379/0")),
    ("postgres", "LOOMFLOW_BUDGET_DSN", lambda d: open_ledger("postgres://u@h/db")),
    ("anthropic", "model 'anthropic:claude-x'", lambda d: ModelCatalog("anthropic:claude-x", ProviderSettings())),
    ("openai", "model 'openai:gpt-x'", lambda d: ModelCatalog("openai:gpt-x", ProviderSettings())),
]


@pytest.mark.parametrize(("extra", "setting", "open_backend"), OPENERS, ids=[f"{e}-{s}" for e, s, _ in OPENERS])
def test_a_backend_without_its_extra_names_the_setting_and_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra: str, setting: str, open_backend: Callable[[Path], object]
) -> None:
    hide(monkeypatch, extra)
    with pytest.raises(extras.MissingExtra) as caught:
        open_backend(tmp_path)
    message = str(caught.value)
    assert setting in message, f"the message does not name the setting: {message}"
    assert f"pip install 'loomflow[{extra}]'" in message, f"the message does not name the extra: {message}"


def test_embedded_defaults_need_no_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for extra in extras.EXTRAS:
        hide(monkeypatch, extra)
    open_memory("", tmp_path)
    open_memory("memory://", tmp_path)
    open_policy("", tmp_path)
    open_sink(f"file://{tmp_path}/audit")
    open_ledger("")
    assert ModelCatalog("echo", ProviderSettings()).resolve("").__class__.__name__ == "EchoModel"


def test_a_requested_model_without_its_sdk_is_the_servers_failed_precondition(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "openai")
    catalog = ModelCatalog("echo", ProviderSettings(), offered=["*"])
    with pytest.raises(FailedPrecondition, match=r"loomflow\[openai\]"):
        catalog.resolve("openai:gpt-x")


def test_serve_with_a_dsn_whose_extra_is_missing_exits_2_with_one_line(tmp_path: Path) -> None:
    program = (
        "import sys; sys.modules['asyncpg'] = None\n"
        "from loomflow.cli import main\n"
        "sys.exit(main(['serve', '--services', 'memory', '--insecure', '--port', '0', '--metrics-port', '0']))\n"
    )
    env = {"LOOMFLOW_MEMORY_DSN": "postgres://u@127.0.0.1:1/db", "LOOMFLOW_DATA_DIR": str(tmp_path), "PATH": ""}
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {done.stderr}"
    assert "LOOMFLOW_MEMORY_DSN" in lines[0]
    assert "pip install 'loomflow[postgres]'" in lines[0]
