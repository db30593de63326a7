"""Free-form JSON in requests must be storable by every backend: no NUL in a key or a string value.

The .proto files refuse a NUL in every string field (``string.pattern``, checked by
protovalidate), because Postgres ``text`` and ``jsonb`` cannot hold one (``jsonb``
refuses ``\\u0000`` too) and an entry that cannot be stored once made a whole
batch of other tenants' writes fail. ``google.protobuf.Struct`` fields (tool arguments,
log entry payloads) carry no rules inside, so this step walks them: keys and string
values, at any depth, iteratively (a deep payload cannot exhaust the stack here).
"""

from __future__ import annotations

from functools import cache

from google.protobuf import descriptor, struct_pb2
from google.protobuf.message import Message

from loomflow.kernel.errors import FieldViolation, InvalidArgument

NUL = "\x00"
RULE_ID = "struct.no_nul"
MESSAGE = "must not contain a NUL character (U+0000) in a key or a string value: no backend can store it"

_STRUCT = struct_pb2.Struct.DESCRIPTOR.full_name
_JSON = {_STRUCT, struct_pb2.Value.DESCRIPTOR.full_name, struct_pb2.ListValue.DESCRIPTOR.full_name}


@cache
def _json_fields(message_type: descriptor.Descriptor) -> tuple[tuple[descriptor.FieldDescriptor, bool], ...]:
    """The fields of ``message_type`` worth visiting: (field, holds JSON itself) for JSON or JSON-holding messages."""
    found: list[tuple[descriptor.FieldDescriptor, bool]] = []
    for field in message_type.fields:
        nested = field.message_type
        if nested is None or nested.GetOptions().map_entry:
            continue  # loomflow's maps are string → string, covered by the wire rules
        if nested.full_name in _JSON:
            found.append((field, True))
        elif _holds_json(nested, frozenset({message_type.full_name})):
            found.append((field, False))
    return tuple(found)


def _holds_json(message_type: descriptor.Descriptor, seen: frozenset[str]) -> bool:
    if message_type.full_name in seen:
        return False
    for field in message_type.fields:
        nested = field.message_type
        if nested is None or nested.GetOptions().map_entry:
            continue
        if nested.full_name in _JSON or _holds_json(nested, seen | {message_type.full_name}):
            return True
    return False


def _json_has_nul(root: Message) -> bool:
    stack: list[Message] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, struct_pb2.Struct):
            for key, value in node.fields.items():
                if NUL in key:
                    return True
                stack.append(value)
        elif isinstance(node, struct_pb2.ListValue):
            stack.extend(node.values)
        elif isinstance(node, struct_pb2.Value):
            kind = node.WhichOneof("kind")
            if kind == "string_value":
                if NUL in node.string_value:
                    return True
            elif kind == "struct_value":
                stack.append(node.struct_value)
            elif kind == "list_value":
                stack.append(node.list_value)
    return False


def _violations(message: Message, prefix: str, out: list[FieldViolation]) -> None:
    for field, is_json in _json_fields(message.DESCRIPTOR):
        if field.is_repeated:
            values = list(getattr(message, field.name))
            paths = [f"{prefix}{field.name}[{i}]" for i in range(len(values))]
        elif message.HasField(field.name):
            values, paths = [getattr(message, field.name)], [prefix + field.name]
        else:
            continue
        for value, path in zip(values, paths, strict=True):
            if not is_json:
                _violations(value, path + ".", out)
            elif _json_has_nul(value):
                out.append(FieldViolation(field=path, description=MESSAGE, reason=RULE_ID))


def refuse_unstorable_json(message: Message) -> None:
    """Raises INVALID_ARGUMENT naming each Struct field of ``message`` that holds a NUL."""
    if not _json_fields(message.DESCRIPTOR):
        return  # most requests: one cached lookup
    violations: list[FieldViolation] = []
    _violations(message, "", violations)
    if violations:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        raise InvalidArgument(f"invalid {message.DESCRIPTOR.name}: {summary}", violations)
