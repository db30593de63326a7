"""Declarative request validation with protovalidate.

The rules live in the .proto files (``buf.validate`` annotations); this module
only runs them and reports every violation as a ``BadRequest`` field violation,
so bad input answers INVALID_ARGUMENT naming the field, never INTERNAL.
"""

from __future__ import annotations

import protovalidate
from google.protobuf.message import Message

from loomflow.kernel.errors import FieldViolation, InvalidArgument
from loomflow.kernel.jsondepth import depth_limit_message, too_deep_json
from loomflow.kernel.jsonscan import plain_json
from loomflow.kernel.storable import refuse_unstorable_json

DEPTH_RULE = "json.max_depth"

_validator = protovalidate.Validator()  # one instance: it caches compiled rules per message type


def _field_path(violation: protovalidate.Violation) -> str:
    parts: list[str] = []
    path = violation.proto.field
    for element in path.elements if path is not None else ():
        name = element.field_name
        subscript = element.subscript  # a protobuf-py oneof: None, or an object holding index/key
        if subscript is not None:
            key = getattr(subscript, "value", subscript)
            name += f"[{key!r}]"
        parts.append(name)
    return ".".join(parts)


def validate(message: Message) -> None:
    """Raises :class:`InvalidArgument` listing every violated rule of ``message``.

    Free-form JSON (Struct fields) is checked for depth first, so no deeper walk meets it.
    One walk clears the JSON of nearly every request; only one it does not clear takes the
    walks that name the field (depth here, NUL after the rules), which raise as they always did.
    """
    plain = plain_json(message)
    if not plain:
        too_deep = too_deep_json(message)
        if too_deep is not None:
            field, depth = too_deep
            raise InvalidArgument.field(field, depth_limit_message(depth), reason=DEPTH_RULE)
    try:
        _validator.validate(message)
    except protovalidate.ValidationError as exc:
        violations = [
            FieldViolation(field=_field_path(v), description=v.proto.message, reason=v.proto.rule_id)
            for v in exc.violations
        ]
        summary = "; ".join(f"{v.field or '(message)'}: {v.description}" for v in violations)
        raise InvalidArgument(f"invalid {message.DESCRIPTOR.name}: {summary}", violations) from None
    if not plain:
        refuse_unstorable_json(message)  # Struct payloads carry no rules of their own
