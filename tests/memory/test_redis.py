"""Redis specifics: the key scheme is injective for any user id, and every key of a tenant shares one hash tag."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from loomflow.memory.models import EpisodeDraft, RecallQuery, now_micros
from loomflow.memory.store.redis import RedisStore, tenant_prefix

TRICKY = ["a:b", "a", "a:b:", "*", "a*", "{x}", "}{", "a}:e", "user{1}:e:1", "ünïcødé", "a b"]


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_distinct_tenants_never_share_a_key_prefix(first: str, second: str) -> None:
    if first != second:
        assert not tenant_prefix(first).startswith(tenant_prefix(second))


@given(st.text(min_size=1, max_size=40))
def test_a_prefix_has_exactly_one_hash_tag_and_no_glob_characters_inside_it(tenant: str) -> None:
    prefix = tenant_prefix(tenant)
    tag = prefix[prefix.index("{") + 1 : prefix.index("}")]
    assert prefix.count("{") == 1
    assert prefix.count("}") == 1
    assert not set(tag) & set("*?[]:{}\\")


@pytest.mark.redis
async def test_tenants_with_separator_and_glob_characters_stay_isolated(redis_url: str, unique: str) -> None:
    store = RedisStore(redis_url)
    await store.start()
    try:
        tenants = [f"{name}-{unique}" for name in TRICKY] + [f"{unique}:{name}" for name in TRICKY]
        stored = {t: await store.remember(t, EpisodeDraft("", f"secret of {t}", ""), now_micros()) for t in tenants}
        for t in tenants:
            hits = await store.recall(t, RecallQuery(text="secret of", limit=100))
            assert [h.episode.id for h in hits] == [stored[t].id], f"{t!r} saw another tenant's episode"
        client = aioredis.from_url(redis_url)
        try:
            keys = [k.decode() async for k in client.scan_iter(match="loomflow:memory:*")]
        finally:
            await client.aclose()
        for t in tenants:
            assert len([k for k in keys if k.startswith(tenant_prefix(t))]) == 4, "t, e, v, i keys per tenant"
    finally:
        await store.close()
