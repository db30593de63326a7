"""docs/agent.md documents every Agent option under its flag and variable."""

from __future__ import annotations

from loomflow.agent.service import SECTION, Settings
from loomflow.kernel import config
from tests.support.processes import REPO


def test_every_agent_option_is_in_the_configuration_table() -> None:
    text = (REPO / "docs" / "agent.md").read_text()
    missing = [o.env for o in config.options(SECTION, Settings) if f"| `{o.flag}` | `{o.env}` |" not in text]
    assert not missing, f"docs/agent.md lacks a table row for {missing}"
