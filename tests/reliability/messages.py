"""Hypothesis strategies for any loomflow request, built from its protobuf descriptor.

Nothing here knows a service. Every field is drawn from its type, in one of two
modes chosen per request:

* **wild**: anything the type admits — edge integers, NaN and infinities,
  unknown enum numbers, empty required fields, strings past their limits;
* **conforming**: values inside the field's own protovalidate rules (lengths,
  ranges, defined enums, required fields, item counts, read from the
  ``buf.validate`` options), so the request passes validation and the handler
  itself meets the adversarial content: strings that are SQL, Redis glob or
  Chroma filter syntax, look-alikes of the anonymous sentinel, bidi and
  zero-width characters, strings exactly at their maximum length, timestamps
  far outside any calendar, ``google.protobuf.Struct`` payloads nested up to the
  decoder's depth limit.

Scopes draw tenants from a small pool, and fields named like ids draw from ids
of real records (:data:`KNOWN_IDS`), so one tenant guesses another's ids.
"""

from __future__ import annotations

from typing import Any, Literal

from google.protobuf import message_factory, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from loomflow._vendor.buf.validate import validate_pb2
from loomflow.v1 import tenancy_pb2

TENANTS = ("alice", "bob", "carol")

KNOWN_IDS: list[str] = []
"""Ids of real records (episodes, facts, reservations, approvals) the fuzz module created for its
tenants; fields named like ids draw from them, so one tenant guesses another's real ids."""

INJECTION = (
    "'; DROP TABLE memory_episodes; --",
    "' OR '1'='1",
    '" OR 1=1 --',
    "alice' --",
    "%",
    "_%",
    "\\",
    "*",
    "?",
    "[a-z]*",
    "{}",
    "{alice}",
    "alice:*",
    "loomflow:memory:*",
    '{"$ne": ""}',
    "$or",
    "$where",
    "null",
    "../../../etc/passwd",
    "\u202ealice",
    "alice\u200b",
    "😀" * 8,
)

SENTINEL_LOOKALIKES = (
    "__jeeves_anon_user__",
    "__JEEVES_ANON_USER__",
    " __jeeves_anon_user__",
    "＿＿ｊｅｅｖｅｓ＿ａｎｏｎ＿ｕｓｅｒ＿＿",  # fullwidth
    "__je\u0435ves_anon_user__",
    "__jeeves_an0n_user__",
    "__jeeves\u200b_anon_user__",
)

ADVERSARIAL = INJECTION + SENTINEL_LOOKALIKES

_HUGE = 1_100_000  # past the largest field limit (1 MiB), still under the 4 MiB message limit

_INT32 = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_FIXED32,
}
_UNSIGNED = {
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED64,
}
_INTEGERS = _INT32 | {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED64,
}


def _known_id(index: int) -> str:
    return KNOWN_IDS[index % len(KNOWN_IDS)] if KNOWN_IDS else "0"


def _rules(field: FieldDescriptor) -> validate_pb2.FieldRules:
    rules: validate_pb2.FieldRules = field.GetOptions().Extensions[validate_pb2.field]  # type: ignore[index]
    return rules


# -- strings -----------------------------------------------------------------


def wild_texts(huge: bool) -> st.SearchStrategy[str]:
    options = [st.text(max_size=40), st.sampled_from((*ADVERSARIAL, ""))]
    if huge:
        options.append(st.integers(257, _HUGE).map(lambda n: "x" * n))
    return st.one_of(*options)


def conforming_texts(rules: validate_pb2.StringRules, is_id: bool) -> st.SearchStrategy[str]:
    low = rules.min_len if rules.HasField("min_len") else 0
    high = rules.max_len if rules.HasField("max_len") else 4096
    if rules.HasField("len"):
        low = high = rules.len
    if list(getattr(rules, "in")):
        return st.sampled_from(list(getattr(rules, "in")))

    def fits(text: str) -> bool:
        return low <= len(text) <= high

    options = [
        st.text(min_size=low, max_size=min(high, max(low, 40))),
        st.sampled_from(ADVERSARIAL).filter(fits),
        st.just("x" * high),  # exactly at the limit
    ]
    if is_id:
        options.append(st.integers(0).map(_known_id).filter(fits))
    return st.one_of(*options)


# -- numbers -----------------------------------------------------------------


def _int_bounds(field: FieldDescriptor) -> tuple[int, int]:
    bits = 32 if field.type in _INT32 else 64
    if field.type in _UNSIGNED:
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def integers(field: FieldDescriptor, conforming: bool) -> st.SearchStrategy[int]:
    low, high = _int_bounds(field)
    kind = _rules(field).WhichOneof("type")
    if conforming and kind in ("int32", "int64", "uint32", "uint64", "sint32", "sint64"):
        rules = getattr(_rules(field), kind)
        if rules.HasField("gte"):
            low = max(low, rules.gte)
        if rules.HasField("gt"):
            low = max(low, rules.gt + 1)
        if rules.HasField("lte"):
            high = min(high, rules.lte)
        if rules.HasField("lt"):
            high = min(high, rules.lt - 1)
    edges = sorted({low, high, min(max(0, low), high), min(max(1, low), high)})
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def floats(field: FieldDescriptor, conforming: bool) -> st.SearchStrategy[float]:
    width: Literal[32, 64] = 32 if field.type == FieldDescriptor.TYPE_FLOAT else 64
    kind = _rules(field).WhichOneof("type")
    if conforming and kind in ("float", "double"):
        rules = getattr(_rules(field), kind)
        low = rules.gte if rules.HasField("gte") else None
        high = rules.lte if rules.HasField("lte") else None
        return st.floats(low, high, allow_nan=False, allow_infinity=False, width=width)
    return st.floats(width=width)


def enums(field: FieldDescriptor, conforming: bool) -> st.SearchStrategy[int]:
    assert field.enum_type is not None
    known = [v.number for v in field.enum_type.values]
    if conforming:
        rules = _rules(field).enum
        allowed = list(getattr(rules, "in")) or known
        allowed = [n for n in allowed if n not in set(rules.not_in)]
        return st.sampled_from(allowed or known)
    return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))  # proto3 enums are open


# -- well-known messages -------------------------------------------------------


def json_values(max_leaves: int = 30) -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(ADVERSARIAL)
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=max_leaves,
    )


def nested_struct(depth: int) -> struct_pb2.Struct:
    """A Struct nested ``depth`` levels (each level is Struct → map entry → Value on the wire)."""
    inner = struct_pb2.Struct()
    inner.fields["leaf"].string_value = "x"
    for _ in range(depth - 1):
        outer = struct_pb2.Struct()
        outer.fields["a"].struct_value.MergeFrom(inner)
        inner = outer
    return inner


def structs() -> st.SearchStrategy[struct_pb2.Struct]:
    def build(value: dict[str, Any]) -> struct_pb2.Struct:
        struct = struct_pb2.Struct()
        struct.update(value)
        return struct

    return st.one_of(
        st.dictionaries(st.text(max_size=10), json_values(), max_size=6).map(build),
        st.integers(1, 32).map(nested_struct),  # up to the protobuf decoder's limit of 100 nested messages
    )


def timestamps() -> st.SearchStrategy[timestamp_pb2.Timestamp]:
    return st.builds(
        timestamp_pb2.Timestamp,
        seconds=st.one_of(st.integers(0, 4_102_444_800), st.integers(-(2**63), 2**63 - 1)),
        nanos=st.one_of(st.integers(0, 999_999_999), st.integers(-(2**31), 2**31 - 1)),
    )


def scopes(conforming: bool) -> st.SearchStrategy[tenancy_pb2.UserScope]:
    valid = st.one_of(
        st.sampled_from(TENANTS).map(lambda u: tenancy_pb2.UserScope(user_id=u)),
        st.just(tenancy_pb2.UserScope(anonymous=tenancy_pb2.Anonymous())),
    )
    if conforming:
        return valid
    return st.one_of(
        valid,
        st.just(tenancy_pb2.UserScope()),  # the required oneof left empty
        wild_texts(huge=False).map(lambda u: tenancy_pb2.UserScope(user_id=u)),
        st.integers(257, 4000).map(lambda n: tenancy_pb2.UserScope(user_id="u" * n)),
    )


# -- any message ---------------------------------------------------------------


def requests(descriptor: Descriptor) -> st.SearchStrategy[Message]:
    """A request of ``descriptor``'s type: conforming three times in four, wild otherwise."""
    return st.sampled_from([True, True, True, False]).flatmap(lambda conforming: messages(descriptor, conforming))


def messages(descriptor: Descriptor, conforming: bool, depth: int = 0) -> st.SearchStrategy[Message]:
    """A message of ``descriptor``'s type with a random subset of its fields set."""
    name = descriptor.full_name
    if name == "loomflow.v1.UserScope":
        return scopes(conforming)
    if name == "google.protobuf.Struct":
        return structs()
    if name == "google.protobuf.Timestamp":
        return timestamps()
    cls = message_factory.GetMessageClass(descriptor)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        value = _field(field, conforming, depth)
        rules = _rules(field)
        must = rules.required or rules.string.min_len > 0 or bool(rules.enum.not_in) or rules.repeated.min_items > 0
        required = conforming and must
        fields[field.name] = value if required else st.one_of(st.none(), value)

    def build(values: dict[str, Any]) -> Message:
        message = cls()
        for field_name, value in values.items():
            if value is not None:
                _assign(message, descriptor.fields_by_name[field_name], value)
        return message

    return st.fixed_dictionaries(fields).map(build)


def _field(field: FieldDescriptor, conforming: bool, depth: int) -> st.SearchStrategy[Any]:
    rules = _rules(field)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        entry = field.message_type
        most = rules.map.max_pairs if conforming and rules.map.HasField("max_pairs") else 70
        return st.dictionaries(
            _single(entry.fields_by_name["key"], conforming, depth + 1),
            _single(entry.fields_by_name["value"], conforming, depth + 1),
            max_size=min(most, 8 if conforming else 70),
        )
    if field.is_repeated:
        most = rules.repeated.max_items if conforming and rules.repeated.HasField("max_items") else 40
        least = rules.repeated.min_items if conforming else 0
        return st.lists(_single(field, conforming, depth + 1, rules.repeated.items), min_size=least, max_size=most)
    return _single(field, conforming, depth)


def _single(
    field: FieldDescriptor, conforming: bool, depth: int, rules: validate_pb2.FieldRules | None = None
) -> st.SearchStrategy[Any]:
    rules = rules if rules is not None and rules.ByteSize() else _rules(field)
    if field.message_type is not None:
        if depth > 3:
            return st.just(message_factory.GetMessageClass(field.message_type)())
        return messages(field.message_type, conforming, depth + 1)
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        is_id = field.name.endswith("_id") or field.name == "id"
        if conforming:
            return conforming_texts(rules.string, is_id)
        # Huge strings only at the top level: a map of huge strings only tests the message size limit.
        wild = wild_texts(huge=depth == 0)
        return st.one_of(wild, st.integers(0).map(_known_id)) if is_id else wild
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in _INTEGERS:
        return integers(field, conforming)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return floats(field, conforming)
    if kind == FieldDescriptor.TYPE_ENUM:
        return enums(field, conforming)
    raise TypeError(f"no strategy for {field.full_name} (type {kind})")


def _assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        target = getattr(message, field.name)
        for key, item in value.items():
            if isinstance(item, Message):
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif field.is_repeated:
        target = getattr(message, field.name)
        if field.message_type is not None:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif field.message_type is not None:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)
