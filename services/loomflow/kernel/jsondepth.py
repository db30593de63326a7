"""How deeply JSON nests: in a request's ``google.protobuf.Struct`` fields, and in plain Python values.

Every service bounds the nesting of free-form JSON (tool arguments, log entry
payloads, edited approval arguments) at :data:`MAX_JSON_DEPTH` levels of objects
and lists, so no handler, store or log line meets a value deep enough to exhaust
a recursion limit. Both walks are iterative for the same reason.
"""

from __future__ import annotations

from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

MAX_JSON_DEPTH = 32
"""Levels of objects and lists a JSON value may nest (protobuf's decoder stops near 33 for a Struct)."""

_JSON_TYPES = frozenset({"google.protobuf.Struct", "google.protobuf.ListValue", "google.protobuf.Value"})
_paths: dict[str, tuple[FieldDescriptor, ...]] = {}


def _json_fields(descriptor: Descriptor) -> tuple[FieldDescriptor, ...]:
    """The message-typed fields of ``descriptor`` through which a JSON value can be reached (cached)."""
    found = _paths.get(descriptor.full_name)
    if found is None:
        _paths[descriptor.full_name] = ()  # a message type that contains itself is not walked twice
        found = tuple(
            f
            for f in descriptor.fields
            if f.message_type is not None and (f.message_type.full_name in _JSON_TYPES or _json_fields(f.message_type))
        )
        _paths[descriptor.full_name] = found
    return found


def _children(value: Message) -> list[Message]:
    """The objects and lists directly inside a Struct, ListValue or Value."""
    name = value.DESCRIPTOR.full_name
    if name == "google.protobuf.Struct":
        items = list(value.fields.values())  # type: ignore[attr-defined]
    elif name == "google.protobuf.ListValue":
        items = list(value.values)  # type: ignore[attr-defined]
    else:
        items = [value]
    nested: list[Message] = []
    for item in items:
        kind = item.WhichOneof("kind")
        if kind == "struct_value":
            nested.append(item.struct_value)
        elif kind == "list_value":
            nested.append(item.list_value)
    return nested


def field_values(message: Message, field: FieldDescriptor) -> list[Any]:
    """What a message-typed field holds: a map's values, a list's items, a set singular value, or nothing."""
    if field.is_repeated:
        container: Any = getattr(message, field.name)
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        return list(container.values()) if is_map else list(container)
    return [getattr(message, field.name)] if message.HasField(field.name) else []


def struct_depth(value: Message, stop_after: int = MAX_JSON_DEPTH) -> int:
    """Levels of objects and lists in a Struct, ListValue or Value (counting stops past ``stop_after``)."""
    name = value.DESCRIPTOR.full_name
    start = _children(value) if name == "google.protobuf.Value" else [value]
    deepest = 0
    stack = [(node, 1) for node in start]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > stop_after:
            return deepest
        stack.extend((child, depth + 1) for child in _children(node))
    return deepest


def too_deep_json(message: Message, prefix: str = "") -> tuple[str, int] | None:
    """The first field of ``message`` whose JSON nests deeper than :data:`MAX_JSON_DEPTH`: (path, depth)."""
    for field in _json_fields(cast(Descriptor, message.DESCRIPTOR)):
        path = prefix + field.name
        for index, item in enumerate(field_values(message, field)):
            where = f"{path}[{index}]" if field.is_repeated else path
            if item.DESCRIPTOR.full_name in _JSON_TYPES:
                depth = struct_depth(item)
                if depth > MAX_JSON_DEPTH:
                    return where, depth
            else:
                found = too_deep_json(item, where + ".")
                if found is not None:
                    return found
    return None


def json_depth(value: Any, stop_after: int = MAX_JSON_DEPTH) -> int:
    """Levels of dicts and lists in a plain JSON value (counting stops past ``stop_after``)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > stop_after:
            return deepest
        items = node.values() if isinstance(node, dict) else node
        stack.extend((item, depth + 1) for item in items if isinstance(item, dict | list))
    return deepest


def depth_limit_message(depth: int) -> str:
    shown = f"more than {MAX_JSON_DEPTH}" if depth > MAX_JSON_DEPTH else str(depth)
    return f"JSON nested {shown} levels deep; the limit is {MAX_JSON_DEPTH} levels of objects and lists"
