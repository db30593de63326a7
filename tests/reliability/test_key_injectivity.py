"""The Redis key schemes are injective in the tenant: no user id, whatever its characters
(``:``, ``*``, ``{}``, Unicode), produces a key of another tenant, and every tenant's keys share
one Redis Cluster hash tag that no user id can choose."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from loomflow.budget.ledger.redis import RedisLedger
from loomflow.budget.models import Moment
from loomflow.memory.store.redis import _Keys, tenant_prefix

KEY_SYNTAX = st.sampled_from([":", "*", "?", "{", "}", "[", "]", "\\", "a", "é", "😀", " ", "0", "_", "%"])
user_ids = st.one_of(st.text(min_size=1, max_size=24), st.lists(KEY_SYNTAX, min_size=1, max_size=10).map("".join))
NOW = Moment(1_775_001_540_000, "2026-03-31", "2026-03")


def memory_keys(tenant: str) -> set[str]:
    keys = _Keys(tenant)
    return {keys.tenant_row, keys.episodes, keys.vectors, keys.ids, keys.blocks, keys.facts, keys.tombstones}


@given(user_ids, user_ids)
def test_memory_key_prefixes_are_prefix_free_so_no_tenant_reaches_another(a: str, b: str) -> None:
    if a == b:
        return
    pa, pb = tenant_prefix(a), tenant_prefix(b)
    assert not pa.startswith(pb), f"{b!r}'s keys are a prefix of {a!r}'s"
    assert not pb.startswith(pa), f"{a!r}'s keys are a prefix of {b!r}'s"
    assert not memory_keys(a) & memory_keys(b)


@given(user_ids)
def test_memory_keys_hash_tag_is_the_encoded_tenant_whatever_braces_the_id_holds(tenant: str) -> None:
    for key in memory_keys(tenant):
        tag = key[key.index("{") + 1 : key.index("}")]
        assert tag == tenant_prefix(tenant).split("{", 1)[1].split("}", 1)[0]
        assert tag
        assert "{" not in tag


def ledger() -> RedisLedger:
    return RedisLedger("redis://127.0.0.1:1/0?key_prefix=p")  # never connects: only its key scheme is used


@given(user_ids, user_ids, st.text(max_size=12), st.text(max_size=12))
def test_budget_reservation_keys_are_injective_in_tenant_and_id(a: str, b: str, ra: str, rb: str) -> None:
    if (a, ra) == (b, rb):
        return
    scheme = ledger()
    assert scheme._reservation_key(a, ra) != scheme._reservation_key(b, rb)


@given(user_ids, user_ids)
def test_budget_tenants_share_only_the_global_keys(a: str, b: str) -> None:
    if a == b:
        return
    scheme = ledger()
    shared = set(scheme._state_keys(a, NOW)) & set(scheme._state_keys(b, NOW))
    assert all(":global" in key or key.endswith(":limits:default") for key in shared), shared


@given(user_ids)
def test_budget_keys_hash_tag_is_the_configured_prefix_not_the_user_id(tenant: str) -> None:
    scheme = ledger()
    for key in [*scheme._state_keys(tenant, NOW), scheme._reservation_key(tenant, "r")]:
        assert key.startswith("{p}:"), key
