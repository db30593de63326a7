"""The YAML policy file (``LOOMFLOW_POLICY_FILE``), read with every error naming its line.

The file is composed into YAML nodes (not plain values) so each node keeps
its position; every problem, from a syntax error to a bad condition value, is
reported as ``<file>:<line>:<column>: <what is wrong>``. The policies it
yields are validated by the same :func:`~loomflow.policy.models.policy_problems`
that guards ``PutPolicy``. The format, with examples, is in docs/policy.md::

    default:
      mode: default            # default | accept-edits | bypass | plan
      fallback: allow          # allow | deny | ask (when no rule matches a non-destructive tool)
      rules:
        - id: no-secrets
          tool: "read_*"
          when:
            path: {matches: ["*.env", "*/secrets/*"]}
          decision: deny
          reason: secrets stay secret
    users:
      alice:
        mode: accept-edits
        rules: []
    anonymous:
      mode: plan
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from loomflow.kernel.config import ConfigError
from loomflow.kernel.tenancy import ANONYMOUS_SENTINEL
from loomflow.policy.engine import argument_text
from loomflow.policy.models import (
    DEFAULT_POLICY_KEY,
    Condition,
    Decision,
    Mode,
    Operator,
    Policy,
    Rule,
    policy_problems,
)

MODES = {"default": Mode.DEFAULT, "accept-edits": Mode.ACCEPT_EDITS, "bypass": Mode.BYPASS, "plan": Mode.PLAN}
MODE_ALIASES = {"accept_edits": Mode.ACCEPT_EDITS, "acceptEdits": Mode.ACCEPT_EDITS, "read-only": Mode.PLAN}
DECISIONS = {d.value: d for d in Decision}
OPERATORS = {op.value: op for op in Operator}
POLICY_KEYS = ("mode", "fallback", "rules")
RULE_KEYS = ("id", "tool", "decision", "reason", "when", "self_approval")
TOP_KEYS = ("default", "users", "anonymous")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PolicyFileError(ConfigError):
    """The policy file cannot be used; the message names the file and line."""


@dataclass
class PolicyFile:
    path: str
    default: Policy | None = None
    users: dict[str, Policy] = field(default_factory=dict)
    anonymous: Policy | None = None

    def by_key(self) -> dict[str, Policy]:
        """The policies keyed as the store keys them (DEFAULT_POLICY_KEY, tenant keys)."""
        keyed = dict(self.users)
        if self.anonymous is not None:
            keyed[ANONYMOUS_SENTINEL] = self.anonymous
        if self.default is not None:
            keyed[DEFAULT_POLICY_KEY] = self.default
        return keyed


class _Reader:
    def __init__(self, path: str, loader: yaml.SafeLoader) -> None:
        self.path = path
        self._loader = loader

    def error(self, node: Node, message: str) -> PolicyFileError:
        mark = node.start_mark
        return PolicyFileError(f"{self.path}:{mark.line + 1}:{mark.column + 1}: {message}")

    def value(self, node: Node) -> Any:
        return self._loader.construct_object(node, deep=True)

    def mapping(self, node: Node, what: str, allowed: tuple[str, ...] | None = None) -> dict[str, tuple[Node, Node]]:
        """A mapping's entries by key (key node, value node); refuses duplicates and unknown keys."""
        if not isinstance(node, MappingNode):
            raise self.error(node, f"{what} must be a mapping")
        entries: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise self.error(key_node, f"keys of {what} must be plain strings")
            key = str(self.value(key_node))
            if key in entries:
                first = entries[key][0].start_mark.line + 1
                raise self.error(key_node, f"duplicate key {key!r} in {what} (first on line {first})")
            if allowed is not None and key not in allowed:
                raise self.error(key_node, f"unknown key {key!r} in {what}; expected one of: {', '.join(allowed)}")
            entries[key] = (key_node, value_node)
        return entries

    def text(self, node: Node, what: str) -> str:
        if not isinstance(node, ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            raise self.error(node, f"{what} must be a string")
        return str(self.value(node))

    def choice(self, node: Node, what: str, choices: dict[str, Any], aliases: dict[str, Any] | None = None) -> Any:
        word = self.text(node, what)
        found = choices.get(word, (aliases or {}).get(word))
        if found is None:
            raise self.error(node, f"{what} {word!r} is not one of: {', '.join(choices)}")
        return found

    def flag(self, node: Node, what: str) -> bool:
        value = self.value(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, bool):
            raise self.error(node, f"{what} must be true or false")
        return value

    def scalar_text(self, node: Node, what: str) -> str:
        """A condition value as the engine compares it (``true``, ``5``, ``null``, strings as is)."""
        if not isinstance(node, ScalarNode):
            raise self.error(node, f"{what} must be a single value (a string, number, boolean or null)")
        return argument_text(self.value(node))


def _condition(reader: _Reader, argument_node: Node, op_key: Node, op_node: Node) -> Condition:
    argument = reader.text(argument_node, "an argument path")
    op_word = reader.text(op_key, "an operator")
    operator = OPERATORS.get(op_word)
    if operator is None:
        raise reader.error(op_key, f"unknown operator {op_word!r}; expected one of: {', '.join(OPERATORS)}")
    if operator is Operator.EXISTS:
        if reader.value(op_node) is not True:
            raise reader.error(op_node, "exists takes true (to test that an argument is absent, use not_equals/not_in)")
        return Condition(argument, operator, ())
    if isinstance(op_node, SequenceNode):
        values = tuple(reader.scalar_text(item, f"a value of {op_word}") for item in op_node.value)
    else:
        values = (reader.scalar_text(op_node, f"the value of {op_word}"),)
    return Condition(argument, operator, values)


def _rule(reader: _Reader, node: Node, marks: dict[str, Node], path: str) -> Rule:
    entries = reader.mapping(node, "a rule", RULE_KEYS)
    for required in ("id", "tool", "decision"):
        if required not in entries:
            raise reader.error(node, f"a rule needs {required!r}")
    conditions: list[Condition] = []
    marks[path] = node
    for key, (_, value_node) in entries.items():
        marks[f"{path}.{key}"] = value_node
    if "when" in entries:
        when_node = entries["when"][1]
        marks[f"{path}.conditions"] = when_node
        for argument, (argument_node, tests_node) in reader.mapping(when_node, "'when'").items():
            for op_key, op_node in reader.mapping(tests_node, f"the tests of argument {argument!r}").values():
                at = f"{path}.conditions[{len(conditions)}]"
                marks[at] = argument_node
                marks[f"{at}.argument"] = argument_node
                marks[f"{at}.values"] = op_node
                conditions.append(_condition(reader, argument_node, op_key, op_node))
    return Rule(
        id=reader.text(entries["id"][1], "a rule id"),
        tool=reader.text(entries["tool"][1], "a rule's tool pattern"),
        decision=reader.choice(entries["decision"][1], "decision", DECISIONS),
        reason=reader.text(entries["reason"][1], "a rule's reason") if "reason" in entries else "",
        conditions=tuple(conditions),
        self_approval=reader.flag(entries["self_approval"][1], "self_approval")
        if "self_approval" in entries
        else False,
    )


def _policy(reader: _Reader, node: Node, what: str) -> Policy:
    entries = reader.mapping(node, what, POLICY_KEYS)
    marks: dict[str, Node] = {"": node}
    rules: list[Rule] = []
    if "rules" in entries:
        rules_node = entries["rules"][1]
        marks["rules"] = rules_node
        if isinstance(rules_node, ScalarNode) and rules_node.tag == "tag:yaml.org,2002:null":
            pass
        elif not isinstance(rules_node, SequenceNode):
            raise reader.error(rules_node, f"the rules of {what} must be a list")
        else:
            rules = [_rule(reader, item, marks, f"rules[{i}]") for i, item in enumerate(rules_node.value)]
    mode = reader.choice(entries["mode"][1], "mode", MODES, MODE_ALIASES) if "mode" in entries else Mode.DEFAULT
    fallback = Decision.ALLOW
    if "fallback" in entries:
        fallback = reader.choice(entries["fallback"][1], "fallback", DECISIONS)
    policy = Policy(rules=tuple(rules), mode=mode, fallback=fallback)
    problems = policy_problems(policy)
    if problems:
        first = problems[0]
        at = first.path
        while at not in marks:  # the nearest enclosing node we know the position of
            at = _parent(at)
        raise reader.error(marks[at], f"{what}: {first.path}: {first.message}")
    return policy


def _parent(path: str) -> str:
    """``rules[2].conditions[0].values[1]`` → ``rules[2].conditions[0].values`` → … → ``""``."""
    if path.endswith("]"):
        return path[: path.rindex("[")]
    return path.rpartition(".")[0]


def _user_id(reader: _Reader, node: Node) -> str:
    user_id = reader.text(node, "a user id")
    if not 1 <= len(user_id) <= 256:
        raise reader.error(node, "a user id has 1 to 256 characters")
    if _CONTROL.search(user_id):
        raise reader.error(node, "a user id has no control characters")
    if user_id.lower() == ANONYMOUS_SENTINEL.lower():
        raise reader.error(node, f"{user_id!r} is reserved; give the anonymous partition a policy with 'anonymous:'")
    return user_id


def parse_policy_file(text: str, path: str = "<policy file>") -> PolicyFile:
    """Parses and validates a policy file's text; raises :class:`PolicyFileError`."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
            raise PolicyFileError(f"{where}: not valid YAML: {exc.problem or exc.context}") from None
        except yaml.YAMLError as exc:
            raise PolicyFileError(f"{path}: not valid YAML: {exc}") from None
        if root is None:
            raise PolicyFileError(f"{path}: the file is empty; it needs 'default:' and/or 'users:'")
        reader = _Reader(path, loader)
        result = PolicyFile(path)
        entries = reader.mapping(root, "the policy file", TOP_KEYS)
        if "default" in entries:
            result.default = _policy(reader, entries["default"][1], "the default policy")
        if "anonymous" in entries:
            result.anonymous = _policy(reader, entries["anonymous"][1], "the anonymous policy")
        if "users" in entries:
            for user_id, (key_node, value_node) in reader.mapping(entries["users"][1], "'users'").items():
                what = f"the policy of user {user_id!r}"
                result.users[_user_id(reader, key_node)] = _policy(reader, value_node, what)
        return result
    finally:
        loader.dispose()


def load_policy_file(path: str | Path) -> PolicyFile:
    """Reads and validates ``path``; raises :class:`PolicyFileError` naming the file and line."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyFileError(f"{name}: cannot read the policy file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PolicyFileError(f"{name}: the policy file is not UTF-8: {exc}") from None
    return parse_policy_file(text, name)
