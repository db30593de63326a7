"""Tools the Agent hosts: a typed wrapper around a Python function, and a registry.

A tool is any function (sync or async) with annotated parameters; the decorator
derives the JSON schema the model sees from the signature. Tags ("read_only",
"edit", "destructive") travel with every policy check, so a destructive tool
asks for approval under the default policy mode without any rule.

Add your own::

    from loomflow.agent.tools import ToolRegistry, tool

    registry = ToolRegistry()

    @registry.add
    @tool(tags=("read_only",))
    async def weather(city: str) -> str:
        "Today's weather for a city."
        ...

and point the service at it: ``LOOMFLOW_AGENT_TOOLS=mypackage.tools:registry``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Union, overload

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What every provider accepts as a tool name (Anthropic allows no dots)."""

TAGS = frozenset({"read_only", "edit", "destructive"})

_JSON_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object"}


class ToolArgumentError(ValueError):
    """The model called a tool with arguments that do not fit its signature."""


@dataclass(frozen=True)
class Parameter:
    name: str
    json_type: str
    required: bool
    default: Any = None
    description: str = ""


@dataclass(frozen=True)
class ToolSpec:
    """What a model is told about a tool."""

    name: str
    description: str
    input_schema: Mapping[str, Any]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    handler: Callable[..., Any]
    parameters: tuple[Parameter, ...]
    tags: frozenset[str] = frozenset()
    timeout_s: float | None = None
    spec: ToolSpec = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not TOOL_NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r} must match {TOOL_NAME.pattern}")
        unknown = self.tags - TAGS
        if unknown:
            raise ValueError(f"tool {self.name}: unknown tags {sorted(unknown)}; choose from {sorted(TAGS)}")
        properties: dict[str, Any] = {}
        for p in self.parameters:
            prop: dict[str, Any] = {"type": p.json_type}
            if p.description:
                prop["description"] = p.description
            properties[p.name] = prop
        schema = {
            "type": "object",
            "properties": properties,
            "required": [p.name for p in self.parameters if p.required],
        }
        object.__setattr__(self, "spec", ToolSpec(self.name, self.description, schema))

    def bind(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Checks the model's arguments against the signature; returns the call's kwargs."""
        known = {p.name: p for p in self.parameters}
        unexpected = sorted(set(arguments) - set(known))
        if unexpected:
            raise ToolArgumentError(f"unexpected argument(s) {', '.join(unexpected)}")
        bound: dict[str, Any] = {}
        for p in self.parameters:
            if p.name not in arguments:
                if p.required:
                    raise ToolArgumentError(f"missing required argument {p.name!r}")
                continue
            bound[p.name] = _coerce(p, arguments[p.name])
        return bound

    @property
    def blocking(self) -> bool:
        """A plain ``def`` may block or burn CPU: the Agent runs it in a worker process, never on its loop.

        An ``async def`` is I/O: it runs on the Agent's loop and is cancelled at its deadline.
        """
        return not inspect.iscoroutinefunction(self.handler)

    def import_path(self) -> tuple[str, str]:
        """Where a worker process imports the handler from: (module, qualified name)."""
        module, name = self.handler.__module__, self.handler.__qualname__
        if "<locals>" in name or module == "__main__":
            raise TypeError(
                f"tool {self.name} is synchronous, so it runs in a worker process that imports it: define it at "
                "module level (or make it async)"
            )
        return module, name

    async def invoke(self, arguments: Mapping[str, Any]) -> str:
        """Runs the tool in this process (async, or sync in a thread) and returns its text result.

        For scripts and tests; the Agent runs synchronous tools in worker processes instead
        (:class:`loomflow.agent.tools.workers.ToolWorkers`).
        """
        kwargs = self.bind(arguments)
        if inspect.iscoroutinefunction(self.handler):
            result = await self.handler(**kwargs)
        else:
            # Sync tools run off the event loop, with the caller's context (RunContext) copied.
            result = await asyncio.to_thread(self.handler, **kwargs)
        return result if isinstance(result, str) else json.dumps(result, default=str, sort_keys=True)


def _coerce(p: Parameter, value: Any) -> Any:
    # Struct values arrive as floats for every number; accept integral floats for int.
    if p.json_type == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    expected: dict[str, tuple[type, ...]] = {
        "string": (str,),
        "integer": (int,),
        "number": (int, float),
        "boolean": (bool,),
        "object": (dict,),
        "array": (list,),
    }
    kinds = expected.get(p.json_type)
    if kinds is not None and (not isinstance(value, kinds) or (p.json_type != "boolean" and isinstance(value, bool))):
        raise ToolArgumentError(f"argument {p.name!r} must be a {p.json_type}")
    return value


def _json_type(annotation: Any, where: str) -> str:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _json_type(members[0], where)
    if origin in (list, tuple) or annotation in (list, tuple):
        return "array"
    if origin is dict:
        return "object"
    if annotation in _JSON_TYPES:
        return _JSON_TYPES[annotation]
    raise TypeError(f"{where}: parameter type {annotation!r} is not supported (use str, int, float, bool, list, dict)")


def _make_tool(
    fn: Callable[..., Any],
    name: str | None,
    description: str | None,
    tags: Iterable[str],
    timeout_s: float | None,
) -> Tool:
    tool_name = name or fn.__name__
    hints = typing.get_type_hints(fn)
    parameters: list[Parameter] = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"tool {tool_name}: *args and **kwargs are not supported")
        if p.name not in hints:
            raise TypeError(f"tool {tool_name}: parameter {p.name!r} needs a type annotation")
        required = p.default is inspect.Parameter.empty
        parameters.append(
            Parameter(
                p.name,
                _json_type(hints[p.name], f"tool {tool_name}"),
                required,
                None if required else p.default,
            )
        )
    text = description if description is not None else inspect.getdoc(fn) or ""
    return Tool(tool_name, text.strip(), fn, tuple(parameters), frozenset(tags), timeout_s)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    tags: Iterable[str] = (),
    timeout_s: float | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    tags: Iterable[str] = (),
    timeout_s: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turns a function into a :class:`Tool`; the docstring is the model-facing description."""
    if fn is not None:
        return _make_tool(fn, None, None, (), None)

    def decorate(f: Callable[..., Any]) -> Tool:
        return _make_tool(f, name, description, tags, timeout_s)

    return decorate


class ToolRegistry:
    """The tools one Agent offers, by name."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.add(t)

    def add(self, new: Tool) -> Tool:
        """Registers a tool (usable as a decorator above ``@tool``); names must be unique."""
        if new.name in self._tools:
            raise ValueError(f"a tool named {new.name!r} is already registered")
        self._tools[new.name] = new
        return new

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self._tools.values()]

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def extend(self, tools: Iterable[Tool]) -> None:
        for t in tools:
            self.add(t)

    def load(self, path: str) -> None:
        """Adds the tools at ``module:attribute``: a Tool, a ToolRegistry, or an iterable of tools."""
        module_name, _, attribute = path.partition(":")
        if not module_name or not attribute:
            raise ValueError(f"tool path {path!r} must look like 'package.module:attribute'")
        target = getattr(importlib.import_module(module_name), attribute)
        if isinstance(target, Tool):
            self.add(target)
        elif isinstance(target, Iterable):
            for item in target:
                if not isinstance(item, Tool):
                    raise TypeError(f"{path}: {item!r} is not a Tool")
                self.add(item)
        else:
            raise TypeError(f"{path} is neither a Tool nor an iterable of tools")
