"""Raw protobuf wire bytes, for requests no well-behaved client library would send."""

from __future__ import annotations


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def length_delimited(field_number: int, payload: bytes) -> bytes:
    return varint(field_number << 3 | 2) + varint(len(payload)) + payload


def nested_struct_bytes(depth: int) -> bytes:
    """A google.protobuf.Struct nested ``depth`` levels: {"a": {"a": … {}}} (three messages per level)."""
    struct = b""
    for _ in range(depth):
        value = length_delimited(5, struct)  # Value.struct_value
        entry = length_delimited(1, b"a") + length_delimited(2, value)  # FieldsEntry{key, value}
        struct = length_delimited(1, entry)  # Struct.fields
    return struct


def scope_bytes(user_id: bytes) -> bytes:
    """Field 1 of every request: UserScope{user_id} with ``user_id`` as raw (possibly invalid UTF-8) bytes."""
    return length_delimited(1, length_delimited(1, user_id))
