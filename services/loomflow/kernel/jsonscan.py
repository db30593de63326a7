"""One walk over a request's free-form JSON: is every value within the depth limit and free of NUL?

:func:`~loomflow.kernel.validation.validate` bounds JSON nesting (jsondepth.py) and refuses a
NUL in a JSON key or string (storable.py); each of those walks exists to name the offending
field. Nearly every request passes both, so one walk answers the common case first, and only a
request it does not pass takes the two precise walks, which then raise exactly as before. It
visits every JSON value either of them visits (and the values of maps too), so a request it
passes passes both.
"""

from __future__ import annotations

from functools import cache
from typing import cast

from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from loomflow.kernel.jsondepth import MAX_JSON_DEPTH, field_values
from loomflow.kernel.storable import NUL

_Struct = struct_pb2.Struct
_ListValue = struct_pb2.ListValue
_Value = struct_pb2.Value
_JSON = frozenset(t.DESCRIPTOR.full_name for t in (_Struct, _ListValue, _Value))


def _holds_json(message_type: Descriptor) -> bool:
    """Whether any message type reachable from ``message_type`` (itself included) has a JSON field."""
    seen = {message_type.full_name}
    stack = [message_type]
    while stack:
        for field in stack.pop().fields:
            nested = field.message_type
            if nested is None:
                continue
            if nested.full_name in _JSON:
                return True
            if nested.full_name not in seen:
                seen.add(nested.full_name)
                stack.append(nested)
    return False


@cache
def _json_fields(message_type: Descriptor) -> tuple[FieldDescriptor, ...]:
    """The fields of ``message_type`` through which a JSON value can be reached (maps included)."""
    return tuple(
        f
        for f in message_type.fields
        if f.message_type is not None and (f.message_type.full_name in _JSON or _holds_json(f.message_type))
    )


def _plain_value(value: Message) -> bool:
    """A Struct, ListValue or Value nests at most MAX_JSON_DEPTH levels and holds no NUL (iterative)."""
    stack: list[tuple[Message, int]]
    if isinstance(value, _Value):
        kind = value.WhichOneof("kind")
        if kind == "string_value":
            return NUL not in value.string_value
        if kind == "struct_value":
            stack = [(value.struct_value, 1)]
        elif kind == "list_value":
            stack = [(value.list_value, 1)]
        else:
            return True
    else:
        stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return False
        if isinstance(node, _Struct):
            fields = node.fields
            if any(NUL in key for key in fields):
                return False
            items = list(fields.values())
        else:
            items = list(cast(_ListValue, node).values)
        for item in items:
            kind = item.WhichOneof("kind")
            if kind == "string_value":
                if NUL in item.string_value:
                    return False
            elif kind == "struct_value":
                stack.append((item.struct_value, depth + 1))
            elif kind == "list_value":
                stack.append((item.list_value, depth + 1))
    return True


def plain_json(message: Message) -> bool:
    """Whether every JSON value in ``message`` (at any depth of its fields) is within depth and NUL-free."""
    for field in _json_fields(cast(Descriptor, message.DESCRIPTOR)):
        for item in field_values(message, field):
            if isinstance(item, _Struct | _ListValue | _Value):
                if not _plain_value(item):
                    return False
            elif not plain_json(item):
                return False
    return True
