"""Tools the caller runs: ``@tool`` derives the JSON Schema from type hints; ``get_run_context()`` inside.

    @tool
    async def lookup_order(order_id: str, include_items: bool = False) -> str:
        \"\"\"Looks an order up by its id.\"\"\"
        ctx = get_run_context()          # user_id, session_id, run_id of the run that called it
        return await orders.find(ctx.user_id, order_id, include_items)

    agent = Agent(address, token=token, agent="support", tools=[lookup_order])
    result = await agent.run("where is order 42?", user_id="alice", session_id="conv_42")

The Agent service gates each call (policy, approval, audit entry) and pauses the
run; the client runs the tool here and continues the run with its result,
until the run ends. A tool that raises gives the model the error as its result.
"""

from __future__ import annotations

import contextvars
import inspect
import json
import types
import typing
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from google.protobuf import struct_pb2

from loomflow.v1 import agent_pb2

Tags = frozenset[Literal["destructive", "edit", "read_only"]]


@dataclass(frozen=True)
class RunContext:
    """The run a caller tool works for. ``user_id`` is None for the anonymous partition."""

    user_id: str | None
    session_id: str
    run_id: str


_current: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar("loomflow_client_run", default=None)


def get_run_context() -> RunContext:
    """The run calling this tool; raises outside a tool call."""
    context = _current.get()
    if context is None:
        raise LookupError("get_run_context() called outside a caller tool")
    return context


@contextmanager
def bound_run_context(context: RunContext) -> Iterator[None]:
    token = _current.set(context)
    try:
        yield
    finally:
        _current.reset(token)


_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def json_schema(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of a type hint: str/int/float/bool, list[...], dict[str, ...], Optional, Literal."""
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple):
        return {"type": "array", "items": json_schema(args[0])} if args else {"type": "array"}
    if origin is dict or annotation is dict:
        return {"type": "object", "additionalProperties": json_schema(args[1])} if args else {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        if len(kept) == 1:
            return json_schema(kept[0])
        return {"anyOf": [json_schema(a) for a in kept]}
    if annotation is Any or annotation is inspect.Parameter.empty:
        return {}
    raise TypeError(f"no JSON Schema for type {annotation!r}: use str, int, float, bool, list, dict or Literal")


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: Mapping[str, Any]
    handler: Callable[..., Any]
    tags: frozenset[str] = field(default_factory=frozenset)

    def declaration(self) -> agent_pb2.CallerTool:
        schema = struct_pb2.Struct()
        schema.update(dict(self.parameters))
        return agent_pb2.CallerTool(
            name=self.name, description=self.description, parameters=schema, tags=sorted(self.tags)
        )

    async def invoke(self, arguments: Mapping[str, Any], context: RunContext) -> str:
        with bound_run_context(context):
            value = self.handler(**arguments)
            if inspect.isawaitable(value):
                value = await value
        return value if isinstance(value, str) else json.dumps(value, default=str)


def tool(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    tags: Tags = frozenset(),
) -> Any:
    """Makes a function a caller tool: its name, docstring and type hints become what the model is told."""

    def wrap(fn: Callable[..., Any | Awaitable[Any]]) -> Tool:
        hints = typing.get_type_hints(fn)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for parameter in inspect.signature(fn).parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(f"tool {fn.__name__}: *args and **kwargs cannot be described to a model")
            properties[parameter.name] = json_schema(hints.get(parameter.name, Any))
            if parameter.default is parameter.empty:
                required.append(parameter.name)
        schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
        text = description if description is not None else inspect.getdoc(fn) or ""
        return Tool(name or fn.__name__, text, schema, fn, frozenset(tags))

    return wrap(function) if function is not None else wrap
