"""Guard: every DSN scheme a backend factory accepts has its backend in that service's conformance suite.

A factory that learns a new scheme (say ``mysql://`` for policies) without the conformance suite
growing a ``mysql`` parameter would ship a backend no shared test ever ran. The schemes are read
from the factory module itself (every word-like string constant in it is tried as a scheme), so a
new ``if scheme == "…"`` branch is found without anyone listing it here.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest
from _pytest.mark.structures import ParameterSet

import loomflow.agent.store as agent_store
import loomflow.audit.sink as audit_sink
import loomflow.budget.ledger as budget_ledger
import loomflow.kernel.backends.dsn as dsns
import loomflow.memory.store as memory_store
import loomflow.policy.store as policy_store
from loomflow.kernel.config import ConfigError
from loomflow.kernel.extras import MissingExtra
from tests.agent.test_agent_store import STORES as AGENT_STORES
from tests.audit.conftest import SINKS as AUDIT_SINKS
from tests.budget.conftest import BACKENDS as BUDGET_BACKENDS
from tests.memory.conftest import BACKENDS as MEMORY_BACKENDS
from tests.policy.conftest import BACKENDS as POLICY_BACKENDS

ALIASES = {"postgresql": "postgres", "rediss": "redis"}
"""Schemes that are another spelling of one backend."""

SCHEME_WORD = re.compile(r"^([a-z][a-z0-9+.-]*)(://.*)?$")


@dataclass(frozen=True)
class Factory:
    name: str
    module: ModuleType
    open: Callable[[str, Path], object]
    conformance: list[ParameterSet]
    aliases: dict[str, str] = field(default_factory=dict)
    """This service's own names for a scheme (Budget calls its memory:// ledger "inprocess")."""

    def backend_of(self, scheme: str) -> str:
        return self.aliases.get(scheme) or ALIASES.get(scheme, scheme)

    def accepts(self, scheme: str, tmp_path: Path) -> bool:
        try:
            self.open(f"{scheme}://{tmp_path}/probe", tmp_path)
        except MissingExtra:
            return True  # known scheme, its driver is an optional extra
        except ConfigError:
            return False
        return True


FACTORIES = [
    Factory("memory", memory_store, lambda dsn, d: memory_store.open_store(dsn, d), MEMORY_BACKENDS),
    Factory(
        "budget",
        budget_ledger,
        lambda dsn, d: budget_ledger.open_ledger(dsn),
        BUDGET_BACKENDS,
        aliases={"memory": "inprocess"},
    ),
    Factory("policy", policy_store, lambda dsn, d: policy_store.open_store(dsn, d), POLICY_BACKENDS),
    Factory("audit", audit_sink, lambda dsn, d: audit_sink.open_sink(dsn), AUDIT_SINKS),
    Factory("agent", agent_store, lambda dsn, d: agent_store.open_agent_store(dsn, d), AGENT_STORES),
]


def candidate_schemes(module: ModuleType) -> set[str]:
    """Every string constant that could be a scheme (``redis``, ``sqlite://``) in the factory's module
    and in the shared DSN parser (factories ask it ``is_postgres``/``is_redis`` instead of spelling them)."""
    found: set[str] = set()
    sources = inspect.getsource(module) + "\n" + inspect.getsource(dsns)
    for node in ast.walk(ast.parse(sources)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = SCHEME_WORD.match(node.value)
            if match:
                found.add(match.group(1))
    return found


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.name)
def test_every_accepted_scheme_is_a_conformance_backend(factory: Factory, tmp_path: Path) -> None:
    tested = {str(param.id) for param in factory.conformance}
    accepted = {s for s in candidate_schemes(factory.module) if factory.accepts(s, tmp_path)}
    assert accepted, f"{factory.name}: no scheme accepted; the probe is broken"
    untested = {f"{s}:// ({factory.backend_of(s)})" for s in accepted if factory.backend_of(s) not in tested}
    assert not untested, f"{factory.name} accepts schemes its conformance suite never runs: {sorted(untested)}"


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.name)
def test_the_probe_tells_a_refused_scheme(factory: Factory, tmp_path: Path) -> None:
    """Without this, a factory that accepted everything would pass the guard above by accident."""
    assert not factory.accepts("nosuchbackend", tmp_path)


def test_every_conformance_backend_is_a_scheme_some_factory_accepts(tmp_path: Path) -> None:
    """The other direction: a conformance parameter naming no backend would be a test of nothing."""
    for factory in FACTORIES:
        accepted = {factory.backend_of(s) for s in candidate_schemes(factory.module) if factory.accepts(s, tmp_path)}
        assert {str(param.id) for param in factory.conformance} <= accepted, factory.name
