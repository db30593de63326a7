"""Tools a deployment adds by import path (``LOOMFLOW_AGENT_TOOLS=tests.agent.sample_tools:TOOLS``)."""

from __future__ import annotations

from loomflow.agent.context import get_run_context
from loomflow.agent.tools import tool


@tool(tags=("read_only",))
def whoami() -> str:
    """Who the run is for, as the tool sees it."""
    ctx = get_run_context()
    return f"user={ctx.user_id} session={ctx.session_id} run={ctx.run_id}"


@tool
def shout(text: str) -> str:
    """Upper-cases the text."""
    return text.upper()


TOOLS = [whoami]
