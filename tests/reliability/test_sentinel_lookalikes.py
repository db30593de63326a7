"""Look-alikes of the anonymous sentinel are refused on every service; other ids are never folded.

The decision (kernel/lookalikes.py, docs/reliability.md): ids are stored exactly as
sent and compared code point by code point; anything that *reads as* the reserved
sentinel — ASCII case and white space (the .proto), NFKC forms, case folding,
invisible characters and the UTS #39 confusables of its letters (the kernel) — is
INVALID_ARGUMENT with the violation id ``user_id.not_reserved`` on every RPC.

The cases of ``clients/go/loomflow/testdata/sentinel_lookalikes.json`` run here against
the server and in ``go test`` against the Go client's local check: both must agree
(issue 19: Hangul and Braille fillers, digit zeros of other scripts, …).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given
from hypothesis import strategies as st

from loomflow.kernel.lookalikes import fold, reads_as_sentinel, skeleton
from loomflow.kernel.tenancy import ANONYMOUS_SENTINEL
from loomflow.testing.processes import ServeProcess
from loomflow.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    budget_pb2,
    budget_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    tenancy_pb2,
)
from tests.support.repo import REPO

SHARED_TABLE = REPO / "clients" / "go" / "loomflow" / "testdata" / "sentinel_lookalikes.json"
SHARED_CASES: list[dict[str, Any]] = json.loads(SHARED_TABLE.read_text())["cases"]
SHARED_LOOKALIKES = {c["name"]: c["user_id"] for c in SHARED_CASES if c["reads_as_sentinel"]}

LOOKALIKES = {
    "exact": ANONYMOUS_SENTINEL,
    "upper_ascii": ANONYMOUS_SENTINEL.upper(),
    "mixed_case": "__Jeeves_Anon_User__",
    "surrounding_space": f"  {ANONYMOUS_SENTINEL}\t",
    "fullwidth": unicodedata.normalize("NFKC", ANONYMOUS_SENTINEL).translate(
        {c: c + 0xFEE0 for c in range(0x21, 0x7F)}
    ),
    "math_bold": "__" + "".join(chr(0x1D41A + ord(c) - ord("a")) for c in "jeeves") + "_anon_user__",
    "cyrillic_e": "__j\u0435\u0435ves_anon_user__",
    "greek_omicron_nu": "__jeeves_an\u03bfn_user__".replace("v", "\u03bd"),
    "armenian_u": "__jeeves_anon_\u057dser__",
    "digit_zero": "__jeeves_an0n_user__",
    "zero_width_space": "__jeeves_\u200banon_user__",
    "soft_hyphen": "__jee\u00adves_anon_user__",
    "bidi_override": "\u202d__jeeves_anon_user__\u202c",
    "combining_accent": "__je\u0301eves_anon_user__",
    "fullwidth_low_line": "\uff3f\uff3fjeeves\uff3fanon\uff3fuser\uff3f\uff3f",
    "long_s": "__jeeve\u017f_anon_u\u017fer__",
    "dotless_j": "__\u0237eeves_anon_user__",
}

DISTINCT_IDS = [
    "alice",
    "аlice",  # Cyrillic а: another tenant, not a sentinel look-alike
    "José",
    "王小明",
    "alice@example.com",
    "__jeeves_anon_user__2",
    "__jeeves_anon_user_",
    "jeeves_anon_user",
    "__jeeves__anon_user__",
    "__anon_user__",
]


@pytest.mark.parametrize("user_id", LOOKALIKES.values(), ids=list(LOOKALIKES))
def test_each_lookalike_reads_as_the_sentinel(user_id: str) -> None:
    assert reads_as_sentinel(user_id), f"{user_id!r} folds to {skeleton(user_id)!r}"


@pytest.mark.parametrize("user_id", DISTINCT_IDS)
def test_ordinary_and_near_miss_ids_are_not_refused(user_id: str) -> None:
    assert not reads_as_sentinel(user_id)


@pytest.mark.parametrize("case", SHARED_CASES, ids=[c["name"] for c in SHARED_CASES])
def test_the_server_agrees_with_the_shared_table(case: dict[str, Any]) -> None:
    """The same table runs in the Go client's `go test` (lookalikes_test.go)."""
    assert reads_as_sentinel(case["user_id"]) is case["reads_as_sentinel"], (
        f"{case['name']}: {case['user_id']!r} folds to {skeleton(case['user_id'])!r}"
    )


def test_the_ascii_shortcut_rests_on_the_data() -> None:
    """reads_as_sentinel skips ASCII ids without '_' or shorter than the sentinel: true only if no other
    ASCII character folds to '_' and no ASCII expansion ('m' → 'rn') appears inside the sentinel."""
    for code in range(0x80):
        folded = fold(chr(code))
        assert "_" not in folded or chr(code) == "_", f"{chr(code)!r} folds to {folded!r}"
        assert len(folded) <= 1 or folded not in ANONYMOUS_SENTINEL, f"{chr(code)!r} folds to {folded!r}"


@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=40))
def test_the_ascii_shortcut_agrees_with_the_full_folding(user_id: str) -> None:
    assert reads_as_sentinel(user_id) == (skeleton(user_id) == ANONYMOUS_SENTINEL)


@given(st.text(max_size=30))
def test_folding_never_merges_an_id_with_the_sentinel_unless_refused(user_id: str) -> None:
    """The skeleton is used for nothing but this check: an id is refused exactly when it folds."""
    assert reads_as_sentinel(user_id) == (skeleton(user_id) == ANONYMOUS_SENTINEL)


def _scoped(user_id: str) -> tenancy_pb2.UserScope:
    return tenancy_pb2.UserScope(user_id=user_id)


def one_rpc_per_service(channel: grpc.Channel, user_id: str) -> list[tuple[str, object, Message]]:
    scope = _scoped(user_id)
    return [
        ("memory", memory_pb2_grpc.MemoryServiceStub(channel).Recall, memory_pb2.RecallRequest(scope=scope, query="q")),
        ("budget", budget_pb2_grpc.BudgetServiceStub(channel).GetStatus, budget_pb2.GetStatusRequest(scope=scope)),
        ("policy", policy_pb2_grpc.PolicyServiceStub(channel).GetPolicy, policy_pb2.GetPolicyRequest(scope=scope)),
        ("audit", audit_pb2_grpc.AuditServiceStub(channel).Query, audit_pb2.QueryRequest(scope=scope)),
        (
            "agent",
            agent_pb2_grpc.AgentServiceStub(channel).Run,
            agent_pb2.RunRequest(scope=scope, options=agent_pb2.RunOptions(prompt="who am i")),
        ),
    ]


def violation_reasons(error: grpc.RpcError) -> list[tuple[str, str]]:
    trailers: Any = error.trailing_metadata()  # a grpc.Call as well
    raw = next((v for k, v in trailers or () if k == "grpc-status-details-bin"), b"")
    found: list[tuple[str, str]] = []
    for detail in status_pb2.Status.FromString(raw).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend((v.field, v.reason) for v in bad.field_violations)
    return found


@pytest.fixture(scope="module")
def channel(served: ServeProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(served.address) as opened:
        yield opened


EVERY_LOOKALIKE = {**LOOKALIKES, **{f"shared: {name}": uid for name, uid in SHARED_LOOKALIKES.items()}}


@pytest.mark.parametrize("user_id", EVERY_LOOKALIKE.values(), ids=list(EVERY_LOOKALIKE))
def test_every_service_refuses_every_lookalike_naming_the_rule(channel: grpc.Channel, user_id: str) -> None:
    for service, method, request in one_rpc_per_service(channel, user_id):
        with pytest.raises(grpc.RpcError) as caught:
            method(request, timeout=10)  # type: ignore[operator]
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{service} accepted {user_id!r}"
        reasons = violation_reasons(caught.value)
        assert ("scope.user_id", "user_id.not_reserved") in reasons, f"{service}: {reasons}"


def test_the_anonymous_partition_stays_reachable_only_as_anonymous(channel: grpc.Channel) -> None:
    memory = memory_pb2_grpc.MemoryServiceStub(channel)
    anonymous = tenancy_pb2.UserScope(anonymous=tenancy_pb2.Anonymous())
    memory.Remember(memory_pb2.RememberRequest(scope=anonymous, input="anonymous visitor note zq47"), timeout=10)
    hits = memory.Recall(memory_pb2.RecallRequest(scope=anonymous, query="visitor note zq47"), timeout=10).hits
    assert hits
    assert hits[0].episode.scope.WhichOneof("kind") == "anonymous"
    for user_id in DISTINCT_IDS:
        recalled = memory.Recall(memory_pb2.RecallRequest(scope=_scoped(user_id), query="zq47"), timeout=10).hits
        assert all("zq47" not in h.episode.input for h in recalled), f"{user_id!r} reached the anonymous partition"
