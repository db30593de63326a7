"""The YAML policy file: what it may say, and that every mistake names its line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loomflow import suite
from loomflow.kernel.tenancy import ANONYMOUS_SENTINEL
from loomflow.policy.engine import compile_policy, decide
from loomflow.policy.models import DEFAULT_POLICY_KEY, Condition, Decision, Mode, Operator, Rule
from loomflow.policy.policy_file import PolicyFileError, load_policy_file, parse_policy_file
from loomflow.testing.processes import source_env
from loomflow.testing.suite import TEST_JWT_SECRET, running_suite
from loomflow.v1 import policy_pb2
from tests.policy.grpc_support import SERVICE, client

GOOD = """\
# The example from docs/policy.md
default:
  mode: default
  fallback: allow
  rules:
    - id: no-secrets
      tool: "read_*"
      when:
        path: {matches: ["*.env", "*/secrets/*"]}
      decision: deny
      reason: secrets stay secret
    - id: small-deletes-only
      tool: delete_file
      when:
        count: {greater_than: 10}
        dry_run: {not_equals: true}
      decision: ask
    - id: trusted-hosts
      tool: http_get
      when:
        host: {in: [example.com, api.example.com]}
        url: {exists: true}
      decision: allow
users:
  alice:
    mode: accept-edits
    rules: []
  "bob@example.com":
    mode: plan
anonymous:
  mode: plan
  fallback: deny
"""


def test_a_good_file_yields_every_policy() -> None:
    parsed = parse_policy_file(GOOD, "policies.yaml")
    keyed = parsed.by_key()
    assert set(keyed) == {DEFAULT_POLICY_KEY, "alice", "bob@example.com", ANONYMOUS_SENTINEL}
    default = keyed[DEFAULT_POLICY_KEY]
    assert default.rules[0] == Rule(
        "no-secrets",
        "read_*",
        Decision.DENY,
        (Condition("path", Operator.MATCHES, ("*.env", "*/secrets/*")),),
        "secrets stay secret",
    )
    assert default.rules[1].conditions == (
        Condition("count", Operator.GREATER_THAN, ("10",)),
        Condition("dry_run", Operator.NOT_EQUALS, ("true",)),  # YAML true compares as the text "true"
    )
    assert default.rules[2].conditions[1] == Condition("url", Operator.EXISTS, ())
    assert keyed["alice"].mode is Mode.ACCEPT_EDITS
    assert keyed["bob@example.com"].mode is Mode.PLAN
    assert keyed[ANONYMOUS_SENTINEL].fallback is Decision.DENY
    compiled = compile_policy(default)
    assert decide(compiled, "read_file", {"path": "/app/.env"}, ()).matched_rule == "no-secrets"
    assert decide(compiled, "delete_file", {"count": 11, "dry_run": False}, ()).decision is Decision.ASK
    assert decide(compiled, "delete_file", {"count": 11, "dry_run": True}, ()).decision is Decision.ALLOW


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("default:\n  mode: [unclosed\n", ":3:1:", "not valid YAML"),
        ("default:\n  mode: sideways\n", ":2:9:", "mode 'sideways' is not one of: default, accept-edits, bypass, plan"),
        ("defaults:\n  mode: plan\n", ":1:1:", "unknown key 'defaults'"),
        (
            "default:\n  mode: plan\n  mode: bypass\n",
            ":3:3:",
            "duplicate key 'mode' in the default policy (first on line 2)",
        ),
        ("default:\n  rules:\n    - tool: x\n      decision: deny\n", ":3:7:", "a rule needs 'id'"),
        ("default:\n  rules:\n    - {id: a, tool: x, decision: maybe}\n", ":3:34:", "decision 'maybe' is not one of"),
        ("default:\n  rules: {id: a}\n", ":2:10:", "the rules of the default policy must be a list"),
        (
            "default:\n  rules:\n    - {id: a, tool: x, decision: deny}\n    - {id: a, tool: y, decision: deny}\n",
            ":4:12:",
            "duplicate rule id 'a' (first used by rules[0])",
        ),
        (
            "users:\n  alice:\n    rules:\n      - id: r\n        tool: x\n        decision: deny\n"
            "        when:\n          size: {less_than: huge}\n",
            ":8:29:",
            "the policy of user 'alice': rules[0].conditions[0].values[0]: less_than needs a number",
        ),
        (
            "default:\n  rules:\n    - id: r\n      tool: x\n      decision: deny\n      when:\n        p: {like: a}\n",
            ":7:13:",
            "unknown operator 'like'",
        ),
        (
            "default:\n  rules:\n    - id: r\n      tool: x\n      decision: deny\n"
            "      when:\n        p: {exists: false}\n",
            ":7:21:",
            "exists takes true",
        ),
        (
            "default:\n  rules:\n    - id: r\n      tool: x\n      decision: deny\n"
            "      when:\n        p: {equals: {a: 1}}\n",
            ":7:21:",
            "must be a single value",
        ),
        ("default:\n  rules:\n    - {id: r, tool: '', decision: deny}\n", ":3:21:", "rules[0].tool: must not be empty"),
        ("users:\n  __JEEVES_ANON_USER__: {mode: plan}\n", ":2:3:", "is reserved"),
        ("", "", "the file is empty"),
        ("- just\n- a list\n", ":1:1:", "the policy file must be a mapping"),
    ],
)
def test_bad_files_name_the_line_and_say_what_is_wrong(text: str, where: str, words: str) -> None:
    with pytest.raises(PolicyFileError) as caught:
        parse_policy_file(text, "policies.yaml")
    message = str(caught.value)
    assert message.startswith(f"policies.yaml{where}"), message
    assert words in message, message


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="cannot read the policy file"):
        load_policy_file(tmp_path / "nope.yaml")


def test_a_bad_file_refuses_to_start_the_server(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text("default:\n  fallback: perhaps\n")
    env = {"LOOMFLOW_POLICY_FILE": str(path), "LOOMFLOW_AUTH_JWT_SECRET": TEST_JWT_SECRET}
    with pytest.raises(PolicyFileError, match=rf"^{path}:2:13: fallback 'perhaps' is not one of"):
        suite.build_server(env=env, overrides={"": {"services": "policy", "data_dir": str(tmp_path)}})


async def test_the_file_applies_at_start_and_again_after_put_policy_on_restart(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(GOOD)
    overrides = {"policy": {"file": str(path)}}
    async with running_suite(tmp_path, services="policy", insecure=False, overrides=overrides) as running:
        agent = client(running.channel, SERVICE)
        secret = await agent.check("zoe", "read_file", arguments={"path": "/srv/secrets/key"})
        assert (secret.decision, secret.matched_rule) == (policy_pb2.DECISION_DENY, "no-secrets")
        plan = await agent.check("bob@example.com", "shell")
        assert plan.decision == policy_pb2.DECISION_DENY
        assert plan.mode == policy_pb2.MODE_PLAN
        version = (await agent.get_policy("zoe")).policy.version
    async with running_suite(tmp_path, services="policy", insecure=False, overrides=overrides) as running:
        unchanged = (await client(running.channel, SERVICE).get_policy("zoe")).policy.version
        assert unchanged == version, "re-applying an unchanged file must not write a new version"


def test_loomflow_serve_with_a_bad_file_exits_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text("users:\n  alice:\n    mode: yolo\n")
    env = {**source_env(), "LOOMFLOW_POLICY_FILE": str(path)}
    command = [sys.executable, "-m", "loomflow.cli", "serve", "--insecure", "--services", "policy", "--port", "0"]
    command += ["--metrics-port", "0", "--data-dir", str(tmp_path / "data")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert f"{path}:3:11: mode 'yolo' is not one of" in done.stderr
