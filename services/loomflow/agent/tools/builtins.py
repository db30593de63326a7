"""Tools every Agent offers unless told otherwise.

* ``calculator``: arithmetic on a safe expression subset (no names, no calls but a few math functions);
* ``current_time``: the time in an IANA time zone;
* ``notes_read`` / ``notes_append`` / ``notes_clear``: the tenant's notes, a working block in
  MemoryService, so they survive restarts and follow the user to any Agent replica.
  ``notes_clear`` is tagged destructive: under the default policy mode it needs an approval.
"""

from __future__ import annotations

import ast
import datetime
import math
import operator
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc

from loomflow.agent.context import get_run_context
from loomflow.agent.dependencies import dependency_error
from loomflow.agent.tools.registry import Tool, ToolRegistry, tool
from loomflow.v1 import memory_pb2

NOTES_LABEL = "notes"
_MAX_EXPONENT = 1000
_MAX_BITS = 4096
"""Largest integer any step of a calculation may produce (about 1,233 digits): checked *before* each
multiplication or power from its operands' sizes, so no step can run long or fill memory."""
_MAX_NOTE_CHARS = 100_000

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _round(value: Any, ndigits: int | None = None) -> Any:
    # round(1, -10**9) would compute 10**(10**9) first.
    if ndigits is not None and abs(ndigits) > _MAX_EXPONENT:
        raise ValueError(f"round to at most {_MAX_EXPONENT} digits")
    return round(value, ndigits)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": _round,
    "min": min,
    "max": max,
    "log": math.log,
    "sin": math.sin,
    "cos": math.cos,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        _check_size(node.op, left, right)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _FUNCTIONS[node.func.id](*(_evaluate(a) for a in node.args))
    raise ValueError(f"unsupported expression element: {ast.dump(node)[:60]}")


def _bits(value: Any) -> int:
    return value.bit_length() if isinstance(value, int) else 0  # floats overflow (an error) instead of growing


def _check_size(op: ast.operator, left: Any, right: Any) -> None:
    """Refuses a step whose integer result would exceed ``_MAX_BITS``, before computing it.

    Addition and subtraction grow by one bit at most, division shrinks, so only
    products and powers need the check: ``((9**999)**999)**8`` stops at its second step.
    """
    if isinstance(op, ast.Pow):
        if abs(right) > _MAX_EXPONENT:
            raise ValueError(f"exponent larger than {_MAX_EXPONENT}")
        if isinstance(right, int) and right > 0 and _bits(left) > 1 and (_bits(left) - 1) * right > _MAX_BITS:
            raise ValueError(f"result larger than {_MAX_BITS} bits")
    elif isinstance(op, ast.Mult) and _bits(left) + _bits(right) > _MAX_BITS + 1:
        raise ValueError(f"result larger than {_MAX_BITS} bits")


@tool(tags=("read_only",))
def calculator(expression: str) -> str:
    """Evaluates an arithmetic expression: + - * / // % **, parentheses, sqrt, abs, round, min, max, log, sin,
    cos, pi, e."""
    if len(expression) > 1000:
        raise ValueError("expression longer than 1000 characters")
    value = _evaluate(ast.parse(expression, mode="eval"))
    return str(value)


@tool(tags=("read_only",))
def current_time(timezone: str = "UTC") -> str:
    """The current date and time (ISO 8601) in an IANA time zone such as Europe/Paris."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r}") from None
    return datetime.datetime.now(zone).isoformat(timespec="seconds")


async def _get_notes() -> memory_pb2.Block | None:
    ctx = get_run_context()
    deps = ctx.dependencies
    if deps is None:
        raise RuntimeError("notes need the memory service")
    try:
        reply = await deps.memory.GetBlock(
            memory_pb2.GetBlockRequest(scope=ctx.scope, label=NOTES_LABEL),
            metadata=deps.metadata,
            timeout=deps.timeout(ctx.deadline),
        )
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise dependency_error("memory", error) from None
    block: memory_pb2.Block = reply.block
    return block


@tool(tags=("read_only",))
async def notes_read() -> str:
    """Reads the user's saved notes."""
    block = await _get_notes()
    return block.content if block is not None and block.content else "(no notes)"


@tool(tags=("edit",))
async def notes_append(text: str) -> str:
    """Appends a line to the user's saved notes."""
    ctx = get_run_context()
    deps = ctx.dependencies
    if deps is None:
        raise RuntimeError("notes need the memory service")
    for _ in range(5):  # optimistic concurrency: another run may append at the same time
        block = await _get_notes()
        content = (block.content + "\n" if block is not None and block.content else "") + text
        if len(content) > _MAX_NOTE_CHARS:
            raise ValueError("notes are full; clear them first")
        try:
            reply = await deps.memory.PutBlock(
                memory_pb2.PutBlockRequest(
                    scope=ctx.scope,
                    label=NOTES_LABEL,
                    content=content,
                    expected_version=block.version if block is not None else 0,
                ),
                metadata=deps.metadata,
                timeout=deps.timeout(ctx.deadline),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.ABORTED:
                continue
            raise dependency_error("memory", error) from None
        return f"saved (notes version {reply.block.version})"
    raise RuntimeError("notes changed concurrently five times; try again")


@tool(tags=("destructive",))
async def notes_clear() -> str:
    """Deletes all of the user's saved notes. Destructive: needs approval."""
    ctx = get_run_context()
    deps = ctx.dependencies
    if deps is None:
        raise RuntimeError("notes need the memory service")
    try:
        await deps.memory.DeleteBlock(
            memory_pb2.DeleteBlockRequest(scope=ctx.scope, label=NOTES_LABEL),
            metadata=deps.metadata,
            timeout=deps.timeout(ctx.deadline),
        )
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return "there were no notes"
        raise dependency_error("memory", error) from None
    return "notes cleared"


BUILTINS: tuple[Tool, ...] = (calculator, current_time, notes_read, notes_append, notes_clear)


def builtin_registry() -> ToolRegistry:
    return ToolRegistry(BUILTINS)
