"""Tools hosted by the Agent service: the registry, the built-ins and a per-tenant cache."""

from loomflow.agent.context import RunContext, get_run_context
from loomflow.agent.tools.cache import TenantCache
from loomflow.agent.tools.registry import Tool, ToolArgumentError, ToolRegistry, ToolSpec, tool

__all__ = [
    "RunContext",
    "TenantCache",
    "Tool",
    "ToolArgumentError",
    "ToolRegistry",
    "ToolSpec",
    "get_run_context",
    "tool",
]
