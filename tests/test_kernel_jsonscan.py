"""The one-walk JSON check agrees with the two walks that name the field (depth, then NUL).

:func:`loomflow.kernel.validation.validate` skips the precise walks for a request the one
walk clears, so the one walk must never clear what either of them refuses: checked on every
RPC that takes free-form JSON, at the depth limit and one past it, with a NUL in a key or a
string at any depth, in objects and lists, and on generated JSON.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import message_factory, struct_pb2
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from loomflow.kernel import errors
from loomflow.kernel.jsondepth import MAX_JSON_DEPTH, too_deep_json
from loomflow.kernel.jsonscan import plain_json
from loomflow.kernel.storable import refuse_unstorable_json
from loomflow.kernel.validation import validate
from loomflow.v1 import agent_pb2, tenancy_pb2
from tests.reliability.rpcs import ALL_RPCS, STRUCT_RPCS, Rpc, struct_fields


def precise_walks_pass(message: Message) -> bool:
    if too_deep_json(message) is not None:
        return False
    try:
        refuse_unstorable_json(message)
    except errors.InvalidArgument:
        return False
    return True


def request_with(rpc: Rpc, value: Any) -> Message:
    request = message_factory.GetMessageClass(rpc.method.input_type)()
    for field in struct_fields(rpc):
        struct = struct_pb2.Struct()
        struct.update({"v": value})
        getattr(request, field.name).CopyFrom(struct)
    return request


def nested(depth: int, leaf: Any = 1, *, in_lists: bool = False) -> Any:
    """JSON nesting ``depth`` levels of objects and lists, counting the Struct field that holds it."""
    value = leaf
    for _ in range(depth - 1):
        value = [value] if in_lists else {"k": value}
    return value


CASES = {
    "flat": {"a": 1, "b": "text", "c": None, "d": True, "e": [1, "x"]},
    "at the limit": nested(MAX_JSON_DEPTH),
    "one past the limit": nested(MAX_JSON_DEPTH + 1),
    "lists at the limit": nested(MAX_JSON_DEPTH, in_lists=True),
    "lists one past the limit": nested(MAX_JSON_DEPTH + 1, in_lists=True),
    "NUL in a top string": "a\x00b",
    "NUL in a deep string": nested(20, "x\x00"),
    "NUL in a deep key": nested(12, {"bad\x00key": 1}),
    "NUL in a list item": [["ok", ["a\x00"]]],
    "NUL past the depth limit": nested(MAX_JSON_DEPTH + 3, "\x00"),
}


@pytest.mark.parametrize("rpc", STRUCT_RPCS, ids=lambda r: r.id)
@pytest.mark.parametrize("case", CASES)
def test_one_walk_clears_exactly_what_both_walks_clear(rpc: Rpc, case: str) -> None:
    request = request_with(rpc, CASES[case])
    assert plain_json(request) == precise_walks_pass(request)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(alphabet=st.sampled_from("ab\x00 é")),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet=st.sampled_from("ab\x00"), max_size=3), children, max_size=3)
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values, depth=st.integers(min_value=0, max_value=MAX_JSON_DEPTH + 2))
def test_generated_json_agrees(value: Any, depth: int) -> None:
    for rpc in STRUCT_RPCS:
        request = request_with(rpc, nested(depth, value) if depth else value)
        assert plain_json(request) == precise_walks_pass(request)


def test_json_below_the_top_level_is_walked_too() -> None:
    """A caller tool's parameters schema sits two messages deep in a RunRequest."""
    request = agent_pb2.RunRequest(scope=tenancy_pb2.UserScope(user_id="u"))
    tool = request.options.caller_tools.add(name="t")
    tool.parameters.update({"k": nested(MAX_JSON_DEPTH + 1)})
    assert not plain_json(request)
    assert not precise_walks_pass(request)
    with pytest.raises(errors.InvalidArgument):
        validate(request)


def test_requests_without_json_are_plain() -> None:
    for rpc in ALL_RPCS:
        assert plain_json(message_factory.GetMessageClass(rpc.method.input_type)())
