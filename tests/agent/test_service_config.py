"""How the Agent finds the services it calls, and what it refuses to start with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loomflow.agent.dependencies import IN_PROCESS
from loomflow.agent.service import Settings, resolve_addresses
from loomflow.kernel.auth import AuthSettings
from loomflow.kernel.config import ConfigError
from loomflow.kernel.hosting import ServiceContext
from loomflow.kernel.settings import ServerSettings
from loomflow.testing.suite import running_suite


class _Bound:
    bound_port = 6123


def context(host: str, services: str = "memory,budget,policy,audit,agent") -> ServiceContext:
    server = ServerSettings(host=host, services=services)
    return ServiceContext(server=server, auth=AuthSettings(), bound_port_source=_Bound())


@pytest.mark.parametrize(
    ("host", "own"),
    [("127.0.0.1", "127.0.0.1:6123"), ("0.0.0.0", "127.0.0.1:6123"), ("::", "[::1]:6123"), ("::1", "[::1]:6123")],
)
def test_empty_addresses_mean_this_process_reached_over_loopback(host: str, own: str) -> None:
    addresses = resolve_addresses(Settings(budget_address="budget:7000", transport="grpc"), context(host))
    assert (addresses.memory, addresses.policy, addresses.audit) == (own, own, own)
    assert addresses.budget == "budget:7000"


def test_empty_addresses_mean_this_process_called_in_process_by_default() -> None:
    addresses = resolve_addresses(Settings(budget_address="budget:7000"), context("127.0.0.1"))
    assert (addresses.memory, addresses.policy, addresses.audit) == (IN_PROCESS, IN_PROCESS, IN_PROCESS)
    assert addresses.budget == "budget:7000"  # an address names another process: gRPC as before


def test_an_empty_address_for_a_service_this_process_does_not_host_is_refused() -> None:
    with pytest.raises(ConfigError, match="LOOMFLOW_AGENT_AUDIT_ADDRESS"):
        resolve_addresses(Settings(), context("127.0.0.1", services="memory,budget,policy,agent"))


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("model", "mystery", "LOOMFLOW_AGENT_MODEL='mystery'"),
        ("script_file", "/nonexistent/script.json", "LOOMFLOW_AGENT_SCRIPT_FILE"),
        ("tools", "tests.agent.sample_tools:NOPE", "LOOMFLOW_AGENT_TOOLS"),
        ("tools", "no.such.module:tools", "LOOMFLOW_AGENT_TOOLS"),
    ],
)
async def test_bad_agent_settings_stop_the_server_naming_the_variable(
    tmp_path: Path, setting: str, value: str, named: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        async with running_suite(tmp_path, services="agent", overrides={"agent": {setting: value}}):
            pass
