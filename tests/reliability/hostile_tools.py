"""Tools a hostile (or merely buggy) deployment could offer: they spin, hog memory, flood, or hang.

Loaded by tests/reliability/test_tool_isolation.py with
``LOOMFLOW_AGENT_TOOLS=tests.reliability.hostile_tools:TOOLS``.
"""

from __future__ import annotations

import asyncio
import os

from loomflow.agent.tools import tool


@tool(tags=("read_only",))
def spin() -> str:
    """Burns CPU forever (a synchronous tool: it runs in a worker process)."""
    n = 0
    while True:
        n += 1


@tool(tags=("read_only",))
def hog() -> str:
    """Allocates far more memory than a worker may have."""
    return str(len(bytearray(16 << 30)))


@tool(tags=("read_only",))
def flood() -> str:
    """Answers 20 MB of text."""
    return "x" * 20_000_000


@tool(tags=("read_only",))
async def hang() -> str:
    """An asynchronous tool that never answers."""
    await asyncio.sleep(3600)
    return "never"


@tool(tags=("read_only",))
def niceness() -> str:
    """The CPU priority (nice value) the tool runs at."""
    return str(os.nice(0))


TOOLS = [spin, hog, flood, hang, niceness]
