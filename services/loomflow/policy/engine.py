"""The decision function: a compiled policy, a tool call, and its tags in; a verdict out.

Pure and synchronous: no I/O, no clock, no randomness (the caller adds the
decision id). :func:`compile_policy` does the slow work once per policy: tool
globs become the cheapest matcher that fits (everything, equality, prefix,
suffix, or a compiled regex), argument conditions become closures, and every
verdict a rule or mode can produce is built ahead of time. A decision then
costs a dict lookup of the rules that can match the tool name (memoised per
name), and the conditions of those rules in order.

Semantics (docs/policy.md repeats them for users):

1. ``plan`` mode: a tool not tagged ``read_only`` is denied before any rule.
2. The first rule, in order, whose tool glob matches the name and whose
   conditions all hold is the *matching rule*.
3. A matching ``deny`` rule denies, in every mode.
4. ``bypass`` mode: anything not denied by step 3 is allowed.
5. ``accept-edits`` mode: a tool tagged ``edit`` is allowed (instead of asked,
   or instead of the fallback) unless step 3 denied it.
6. Otherwise a matching rule decides (allow or ask).
7. No matching rule: a tool tagged ``destructive`` asks; any other tool gets
   the policy's fallback.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from loomflow.policy.models import (
    Condition,
    Decision,
    Mode,
    Operator,
    Policy,
    Rule,
    Tag,
    Verdict,
)

MISSING: Final = object()
"""What an argument path resolves to when the argument is absent."""

CANDIDATE_CACHE_SIZE = 4096
"""Tool names whose candidate rules one compiled policy memoises (a registry has few tools)."""

_GLOB_CHARS = re.compile(r"[*?\[]")

Matcher = Callable[[str], bool]


def compile_glob(pattern: str) -> Matcher:
    """A matcher equivalent to ``fnmatch.fnmatchcase(name, pattern)``, as cheap as the pattern allows."""
    if pattern == "*":
        return _always
    if not _GLOB_CHARS.search(pattern):
        return pattern.__eq__
    head, star, tail = pattern.partition("*")
    if star and not _GLOB_CHARS.search(head) and tail == "":
        return lambda name: name.startswith(head)
    if star and head == "" and not _GLOB_CHARS.search(tail):
        return lambda name: name.endswith(tail)
    regex = re.compile(fnmatch.translate(pattern), re.DOTALL)
    return lambda name: regex.match(name) is not None


def _always(_: str) -> bool:
    return True


def argument_text(value: Any) -> str:
    """The string form conditions compare: strings as is, ``true``/``false``, integral
    numbers without a decimal point (JSON numbers arrive as floats), ``null``, and
    compact JSON with sorted keys for objects and lists."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "null"
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), default=str)


def _plain(value: Any) -> Any:
    """Mappings and sequences of any kind (e.g. lazy views of a protobuf Struct) as dicts and lists,
    integral floats as ints (so a nested 3 reads the same from JSON as from Python)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def argument_number(value: Any) -> float | None:
    """The numeric value of an argument (a number, or a string that is one), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def resolve(arguments: Mapping[str, Any], path: Sequence[str]) -> Any:
    """Follows a dotted path through objects (by key) and lists (by index); MISSING if absent."""
    current: Any = arguments
    for segment in path:
        if isinstance(current, Mapping):
            if segment not in current:
                return MISSING
            current = current[segment]
        elif isinstance(current, list | tuple) and segment.isdigit():
            index = int(segment)
            if index >= len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


class ArgumentReader:
    """One decision's view of the call's arguments: each path is resolved, and its text
    form made, at most once, however many rules test it."""

    __slots__ = ("_arguments", "_texts", "_values")

    def __init__(self, arguments: Mapping[str, Any]) -> None:
        self._arguments = arguments
        self._values: dict[str, Any] = {}
        self._texts: dict[str, str | None] = {}

    def value(self, path: str) -> Any:
        """The argument at a dotted path, or MISSING."""
        value = self._values.get(path, _UNREAD)
        if value is _UNREAD:
            value = self._values[path] = resolve(self._arguments, path.split("."))
        return value

    def text(self, path: str) -> str | None:
        """The argument's text form (see :func:`argument_text`), or None when it is absent."""
        text = self._texts.get(path, _UNREAD)
        if text is _UNREAD:
            value = self.value(path)
            text = self._texts[path] = None if value is MISSING else argument_text(value)
        return text  # type: ignore[return-value]


_UNREAD: Final = object()

Test = Callable[[ArgumentReader], bool]


def _compile_test(condition: Condition) -> Test:
    """One condition as a closure over the reader. Negations are the exact negation of their
    positive form, so an absent argument satisfies not_equals, not_in and not_matches."""
    op, values, path = condition.operator, condition.values, condition.argument
    if op is Operator.EXISTS:
        return lambda r: r.value(path) is not MISSING
    if op is Operator.EQUALS:
        expected = values[0]
        return lambda r: r.text(path) == expected
    if op is Operator.NOT_EQUALS:
        unwanted = values[0]
        return lambda r: r.text(path) != unwanted
    if op is Operator.IN:
        allowed = frozenset(values)
        return lambda r: r.text(path) in allowed
    if op is Operator.NOT_IN:
        excluded = frozenset(values)
        return lambda r: r.text(path) not in excluded
    if op in (Operator.MATCHES, Operator.NOT_MATCHES):
        matches = _compile_matches(path, tuple(compile_glob(v) for v in values))
        return matches if op is Operator.MATCHES else lambda r: not matches(r)
    bound = float(values[0])
    if op is Operator.LESS_THAN:
        return lambda r: (n := argument_number(r.value(path))) is not None and n < bound
    if op is Operator.GREATER_THAN:
        return lambda r: (n := argument_number(r.value(path))) is not None and n > bound
    raise ValueError(f"unknown operator {op!r}")


def _compile_matches(path: str, globs: tuple[Matcher, ...]) -> Test:
    if len(globs) == 1:
        glob = globs[0]
        return lambda r: (text := r.text(path)) is not None and glob(text)
    return lambda r: (text := r.text(path)) is not None and any(g(text) for g in globs)


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    matches_tool: Matcher
    conditions: tuple[Test, ...]
    verdict: Verdict  # what this rule decides when the mode does not intervene
    mode_verdict: Verdict  # bypass / accept-edits overriding an ask: the mode decided


class CompiledPolicy:
    """A policy ready to decide quickly. Build with :func:`compile_policy`; safe to share."""

    def __init__(self, policy: Policy, rules: tuple[CompiledRule, ...]) -> None:
        self.policy = policy
        self.mode = policy.mode
        self.rules = rules
        self.reads_arguments = any(rule.conditions for rule in rules)
        self._candidates: dict[str, tuple[CompiledRule, ...]] = {}
        self.fallback_verdict = Verdict(
            policy.fallback, "", f"no rule matched; the policy's fallback is {policy.fallback.value}"
        )

    def candidates(self, tool_name: str) -> tuple[CompiledRule, ...]:
        """The rules whose tool glob matches ``tool_name``, in order (memoised per name)."""
        found = self._candidates.get(tool_name)
        if found is None:
            found = tuple(rule for rule in self.rules if rule.matches_tool(tool_name))
            if len(self._candidates) >= CANDIDATE_CACHE_SIZE:
                self._candidates.clear()  # bounded: an unbounded tool-name stream cannot grow it
            self._candidates[tool_name] = found
        return found

    def first_match(self, tool_name: str, arguments: Mapping[str, Any]) -> CompiledRule | None:
        reader: ArgumentReader | None = None
        for rule in self.candidates(tool_name):
            if not rule.conditions:
                return rule
            if reader is None:
                reader = ArgumentReader(arguments)
            for test in rule.conditions:
                if not test(reader):
                    break
            else:
                return rule
        return None


def _rule_verdicts(rule: Rule, mode: Mode) -> tuple[Verdict, Verdict]:
    reason = rule.reason or f"rule {rule.id} says {rule.decision.value}"
    verdict = Verdict(rule.decision, rule.id, reason)
    if mode is Mode.BYPASS:
        mode_reason = f"bypass mode allows everything not denied (rule {rule.id} says ask)"
    else:
        mode_reason = f"accept-edits mode allows edit tools without asking (rule {rule.id} says ask)"
    return verdict, Verdict(Decision.ALLOW, "", mode_reason)


def compile_policy(policy: Policy) -> CompiledPolicy:
    """Compiles a (validated) policy: globs, conditions and verdicts, once."""
    rules = []
    for rule in policy.rules:
        conditions = tuple(_compile_test(c) for c in rule.conditions)
        verdict, mode_verdict = _rule_verdicts(rule, policy.mode)
        rules.append(CompiledRule(rule, compile_glob(rule.tool), conditions, verdict, mode_verdict))
    return CompiledPolicy(policy, tuple(rules))


PLAN_DENIES = Verdict(Decision.DENY, "", "plan mode: only tools tagged read_only may run")
BYPASS_ALLOWS = Verdict(Decision.ALLOW, "", "bypass mode allows everything not denied by a rule")
ACCEPT_EDITS_ALLOWS = Verdict(Decision.ALLOW, "", "accept-edits mode allows edit tools without asking")
DESTRUCTIVE_ASKS = Verdict(Decision.ASK, "", "destructive tool and no rule matched: a human must approve")


def decide(policy: CompiledPolicy, tool_name: str, arguments: Mapping[str, Any], tags: Collection[str]) -> Verdict:
    """The verdict for one tool call (see the module docstring for the exact order)."""
    mode = policy.mode
    if mode is Mode.PLAN and Tag.READ_ONLY not in tags:
        return PLAN_DENIES
    rule = policy.first_match(tool_name, arguments)
    if rule is not None:
        if rule.rule.decision is not Decision.ASK:
            return rule.verdict
        if mode is Mode.BYPASS or (mode is Mode.ACCEPT_EDITS and Tag.EDIT in tags):
            return rule.mode_verdict
        return rule.verdict
    if mode is Mode.BYPASS:
        return BYPASS_ALLOWS
    if mode is Mode.ACCEPT_EDITS and Tag.EDIT in tags:
        return ACCEPT_EDITS_ALLOWS
    if Tag.DESTRUCTIVE in tags:
        return DESTRUCTIVE_ASKS
    return policy.fallback_verdict
