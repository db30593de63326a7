"""The decision function: rule order, tool globs, argument conditions, modes, tags."""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loomflow.policy import engine
from loomflow.policy.engine import compile_glob, compile_policy, decide
from loomflow.policy.models import (
    Condition,
    Decision,
    Mode,
    Operator,
    Policy,
    Rule,
    Verdict,
    policy_problems,
)
from loomflow.policy.wire import StructView, to_struct

ALLOW, DENY, ASK = Decision.ALLOW, Decision.DENY, Decision.ASK


def verdict(policy: Policy, tool: str, arguments: dict[str, Any] | None = None, tags: tuple[str, ...] = ()) -> Verdict:
    return decide(compile_policy(policy), tool, arguments or {}, tags)


def rule(rule_id: str, tool: str, decision: Decision, *conditions: Condition, reason: str = "") -> Rule:
    return Rule(rule_id, tool, decision, tuple(conditions), reason)


# -- rule order and tool globs ------------------------------------------------


def test_first_matching_rule_decides_so_order_matters() -> None:
    read_first = Policy(rules=(rule("read", "fs.read", ALLOW), rule("fs", "fs.*", DENY)))
    fs_first = Policy(rules=(rule("fs", "fs.*", DENY), rule("read", "fs.read", ALLOW)))
    assert verdict(read_first, "fs.read") == Verdict(ALLOW, "read", "rule read says allow")
    assert verdict(read_first, "fs.write").matched_rule == "fs"
    assert verdict(fs_first, "fs.read") == Verdict(DENY, "fs", "rule fs says deny")


def test_rule_reason_is_reported_with_the_decision() -> None:
    policy = Policy(rules=(rule("no-shell", "shell", DENY, reason="shell is off for this tenant"),))
    assert verdict(policy, "shell").reason == "shell is off for this tenant"


def test_a_rule_whose_conditions_fail_is_skipped_for_the_next() -> None:
    policy = Policy(
        rules=(
            rule("tmp", "delete_file", ALLOW, Condition("path", Operator.MATCHES, ("/tmp/*",))),
            rule("other", "delete_file", DENY),
        )
    )
    assert verdict(policy, "delete_file", {"path": "/tmp/x"}).decision is ALLOW
    assert verdict(policy, "delete_file", {"path": "/etc/passwd"}) == Verdict(DENY, "other", "rule other says deny")


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "anything.at_all", True),
        ("calculator", "calculator", True),
        ("calculator", "calculator2", False),
        ("fs.*", "fs.read", True),
        ("fs.*", "fsx.read", False),
        ("*_file", "delete_file", True),
        ("*_file", "delete_files", False),
        ("delete_?", "delete_x", True),
        ("delete_?", "delete_xy", False),
        ("[ab]*", "alpha", True),
        ("[!ab]*", "alpha", False),
        ("a*b*c", "a--b--c", True),
        ("Calc", "calc", False),  # case-sensitive
    ],
)
def test_tool_globs(pattern: str, name: str, expected: bool) -> None:
    assert compile_glob(pattern)(name) is expected


GLOB_ALPHABET = "ab.-_*?[]!"
NAME_ALPHABET = "ab.-_"


@settings(max_examples=400, deadline=None)
@given(pattern=st.text(GLOB_ALPHABET, min_size=1, max_size=8), name=st.text(NAME_ALPHABET, max_size=10))
def test_compiled_globs_agree_with_fnmatchcase(pattern: str, name: str) -> None:
    assert compile_glob(pattern)(name) == fnmatch.fnmatchcase(name, pattern)


rules_strategy = st.lists(
    st.tuples(st.text("ab*?", min_size=1, max_size=4), st.sampled_from([ALLOW, DENY, ASK])), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(specs=rules_strategy, tool=st.text("ab", min_size=1, max_size=4), fallback=st.sampled_from(list(Decision)))
def test_default_mode_is_the_first_glob_match_in_order(
    specs: list[tuple[str, Decision]], tool: str, fallback: Decision
) -> None:
    policy = Policy(rules=tuple(rule(f"r{i}", p, d) for i, (p, d) in enumerate(specs)), fallback=fallback)
    expected = next(((f"r{i}", d) for i, (p, d) in enumerate(specs) if fnmatch.fnmatchcase(tool, p)), ("", fallback))
    got = verdict(policy, tool)
    assert (got.matched_rule, got.decision) == expected


TAG_SETS = st.sets(st.sampled_from(["destructive", "edit", "read_only"]))


@settings(max_examples=300, deadline=None)
@given(
    specs=rules_strategy,
    tool=st.text("ab", min_size=1, max_size=4),
    fallback=st.sampled_from(list(Decision)),
    tags=TAG_SETS,
)
def test_every_mode_is_the_default_decision_transformed_as_documented(
    specs: list[tuple[str, Decision]], tool: str, fallback: Decision, tags: set[str]
) -> None:
    rules = tuple(rule(f"r{i}", p, d) for i, (p, d) in enumerate(specs))

    def under(mode: Mode) -> Verdict:
        return verdict(Policy(rules=rules, mode=mode, fallback=fallback), tool, {}, tuple(tags))

    default = under(Mode.DEFAULT)
    denied_by_rule = default.decision is DENY and default.matched_rule != ""
    assert under(Mode.PLAN).decision is (default.decision if "read_only" in tags else DENY)
    assert under(Mode.BYPASS).decision is (DENY if denied_by_rule else ALLOW)
    if "edit" in tags:
        assert under(Mode.ACCEPT_EDITS).decision is (DENY if denied_by_rule else ALLOW)
    else:
        assert under(Mode.ACCEPT_EDITS) == default
    if not rules or default.matched_rule == "":
        expected = ASK if "destructive" in tags else fallback
        assert default.decision is expected, "without a matching rule: destructive asks, others get the fallback"


def test_candidate_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "CANDIDATE_CACHE_SIZE", 8)
    compiled = compile_policy(Policy(rules=(rule("t", "tool_*", DENY),)))
    for i in range(100):
        assert decide(compiled, f"tool_{i}", {}, ()).decision is DENY
    assert len(compiled._candidates) <= 8


# -- argument conditions ------------------------------------------------------


def holds(condition: Condition, arguments: dict[str, Any]) -> bool:
    policy = Policy(rules=(rule("c", "*", DENY, condition),), fallback=ALLOW)
    return verdict(policy, "tool", arguments).decision is DENY


@pytest.mark.parametrize(
    ("operator", "values", "arguments", "expected"),
    [
        (Operator.EQUALS, ("rm",), {"cmd": "rm"}, True),
        (Operator.EQUALS, ("rm",), {"cmd": "rmdir"}, False),
        (Operator.EQUALS, ("rm",), {}, False),
        (Operator.NOT_EQUALS, ("rm",), {"cmd": "ls"}, True),
        (Operator.NOT_EQUALS, ("rm",), {}, True),  # exact negation of equals: absent is "not rm"
        (Operator.MATCHES, ("/tmp/*", "/var/tmp/*"), {"cmd": "/var/tmp/x"}, True),
        (Operator.MATCHES, ("/tmp/*",), {"cmd": "/etc/x"}, False),
        (Operator.NOT_MATCHES, ("/tmp/*",), {"cmd": "/etc/x"}, True),
        (Operator.NOT_MATCHES, ("/tmp/*",), {}, True),
        (Operator.IN, ("a", "b"), {"cmd": "b"}, True),
        (Operator.IN, ("a", "b"), {"cmd": "c"}, False),
        (Operator.NOT_IN, ("a", "b"), {"cmd": "c"}, True),
        (Operator.NOT_IN, ("a", "b"), {}, True),
        (Operator.EXISTS, (), {"cmd": None}, True),
        (Operator.EXISTS, (), {}, False),
        (Operator.LESS_THAN, ("10",), {"cmd": 9.5}, True),
        (Operator.LESS_THAN, ("10",), {"cmd": 10}, False),
        (Operator.LESS_THAN, ("10",), {"cmd": "3"}, True),  # numeric strings compare as numbers
        (Operator.LESS_THAN, ("10",), {"cmd": "three"}, False),
        (Operator.LESS_THAN, ("10",), {"cmd": True}, False),  # a boolean is not a number
        (Operator.LESS_THAN, ("10",), {}, False),
        (Operator.GREATER_THAN, ("1e3",), {"cmd": 1001}, True),
        (Operator.GREATER_THAN, ("1e3",), {"cmd": 1000}, False),
    ],
)
def test_condition_operators(
    operator: Operator, values: tuple[str, ...], arguments: dict[str, Any], expected: bool
) -> None:
    assert holds(Condition("cmd", operator, values), arguments) is expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (5.0, "5"),  # JSON numbers arrive as floats: integral ones compare without ".0"
        (2.5, "2.5"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        ({"b": 1, "a": [1, "x"]}, '{"a":[1,"x"],"b":1}'),
    ],
)
def test_values_compare_by_their_documented_text_form(value: Any, text: str) -> None:
    assert engine.argument_text(value) == text
    assert holds(Condition("v", Operator.EQUALS, (text,)), {"v": value})


def test_dotted_paths_reach_into_objects_and_lists() -> None:
    arguments = {"options": {"force": True}, "paths": ["/etc/passwd", "/tmp/x"]}
    assert holds(Condition("options.force", Operator.EQUALS, ("true",)), arguments)
    assert holds(Condition("paths.0", Operator.MATCHES, ("/etc/*",)), arguments)
    assert not holds(Condition("paths.5", Operator.EXISTS, ()), arguments)
    assert not holds(Condition("options.force.deeper", Operator.EXISTS, ()), arguments)


def test_all_conditions_of_a_rule_must_hold() -> None:
    both = (Condition("a", Operator.EQUALS, ("1",)), Condition("b", Operator.EQUALS, ("2",)))
    policy = Policy(rules=(rule("both", "*", DENY, *both),))
    assert verdict(policy, "t", {"a": 1, "b": 2}).decision is DENY
    assert verdict(policy, "t", {"a": 1, "b": 3}).decision is ALLOW


def test_wire_arguments_decide_like_plain_dicts() -> None:
    arguments = {"path": "/etc/passwd", "options": {"force": True, "depth": 3}, "list": [1, "two"]}
    conditions = [
        Condition("path", Operator.MATCHES, ("/etc/*",)),
        Condition("options.force", Operator.EQUALS, ("true",)),
        Condition("options.depth", Operator.GREATER_THAN, ("2",)),
        Condition("list.1", Operator.IN, ("two",)),
        Condition("options", Operator.EQUALS, ('{"depth":3,"force":true}',)),
    ]
    view = StructView(to_struct(arguments))
    for condition in conditions:
        policy = compile_policy(Policy(rules=(rule("c", "*", DENY, condition),)))
        assert decide(policy, "t", view, ()).decision is DENY, condition
        assert decide(policy, "t", arguments, ()).decision is DENY, condition


# -- modes and tags -----------------------------------------------------------

NO_RULES = ()
ASK_RULE = (rule("ask", "*", ASK),)
ALLOW_RULE = (rule("allow", "*", ALLOW),)
DENY_RULE = (rule("deny", "*", DENY),)


@pytest.mark.parametrize(
    ("mode", "rules", "tags", "fallback", "expected", "matched"),
    [
        # default: rules decide; destructive with no rule asks; else the fallback
        (Mode.DEFAULT, NO_RULES, (), ALLOW, ALLOW, ""),
        (Mode.DEFAULT, NO_RULES, (), DENY, DENY, ""),
        (Mode.DEFAULT, NO_RULES, (), ASK, ASK, ""),
        (Mode.DEFAULT, NO_RULES, ("destructive",), ALLOW, ASK, ""),
        (Mode.DEFAULT, NO_RULES, ("destructive",), DENY, ASK, ""),
        (Mode.DEFAULT, ALLOW_RULE, ("destructive",), ALLOW, ALLOW, "allow"),  # a rule says otherwise
        (Mode.DEFAULT, DENY_RULE, ("read_only",), ALLOW, DENY, "deny"),
        (Mode.DEFAULT, ASK_RULE, ("edit",), ALLOW, ASK, "ask"),
        # accept-edits: edit tools are allowed without asking, unless a deny rule matches
        (Mode.ACCEPT_EDITS, NO_RULES, ("edit",), DENY, ALLOW, ""),
        (Mode.ACCEPT_EDITS, ASK_RULE, ("edit",), ALLOW, ALLOW, ""),
        (Mode.ACCEPT_EDITS, DENY_RULE, ("edit",), ALLOW, DENY, "deny"),
        (Mode.ACCEPT_EDITS, ASK_RULE, (), ALLOW, ASK, "ask"),
        (Mode.ACCEPT_EDITS, NO_RULES, ("destructive",), ALLOW, ASK, ""),
        (Mode.ACCEPT_EDITS, NO_RULES, (), DENY, DENY, ""),
        # bypass: everything allowed except explicit deny rules
        (Mode.BYPASS, NO_RULES, ("destructive",), DENY, ALLOW, ""),
        (Mode.BYPASS, ASK_RULE, ("destructive",), ALLOW, ALLOW, ""),
        (Mode.BYPASS, ALLOW_RULE, (), ALLOW, ALLOW, "allow"),
        (Mode.BYPASS, DENY_RULE, ("read_only",), ALLOW, DENY, "deny"),
        # plan: only read_only tools may run; they then follow the rules
        (Mode.PLAN, ALLOW_RULE, (), ALLOW, DENY, ""),
        (Mode.PLAN, ALLOW_RULE, ("edit",), ALLOW, DENY, ""),
        (Mode.PLAN, NO_RULES, ("read_only",), ALLOW, ALLOW, ""),
        (Mode.PLAN, DENY_RULE, ("read_only",), ALLOW, DENY, "deny"),
        (Mode.PLAN, ASK_RULE, ("read_only",), ALLOW, ASK, "ask"),
        (Mode.PLAN, NO_RULES, ("read_only",), DENY, DENY, ""),
    ],
)
def test_modes(
    mode: Mode,
    rules: tuple[Rule, ...],
    tags: tuple[str, ...],
    fallback: Decision,
    expected: Decision,
    matched: str,
) -> None:
    got = verdict(Policy(rules=rules, mode=mode, fallback=fallback), "tool", {}, tags)
    assert (got.decision, got.matched_rule) == (expected, matched), got.reason
    assert got.reason


# -- validation ---------------------------------------------------------------


def problems(*rules: Rule) -> dict[str, str]:
    return {p.path: p.message for p in policy_problems(Policy(rules=rules))}


def test_a_valid_policy_has_no_problems() -> None:
    assert problems(rule("a", "fs.*", DENY, Condition("path", Operator.MATCHES, ("/etc/*",)))) == {}


def test_bad_rules_are_named_by_path() -> None:
    found = problems(
        rule("dup", "*", ALLOW),
        rule("dup", "", DENY),
        rule(
            "ok",
            "*",
            ASK,
            Condition("size", Operator.LESS_THAN, ("ten",)),
            Condition("a..b", Operator.EXISTS, ("x",)),
            Condition("path", Operator.EQUALS, ("a", "b")),
            Condition("path", Operator.IN, ()),
        ),
        rule("has space", "*", ALLOW),
    )
    assert "duplicate rule id 'dup'" in found["rules[1].id"]
    assert found["rules[1].tool"] == "must not be empty"
    assert "needs a number" in found["rules[2].conditions[0].values[0]"]
    assert "empty path segment" in found["rules[2].conditions[1].argument"]
    assert found["rules[2].conditions[1].values"] == "exists takes no value"
    assert "exactly one value" in found["rules[2].conditions[2].values"]
    assert "at least one value" in found["rules[2].conditions[3].values"]
    assert "rules[3].id" in found
