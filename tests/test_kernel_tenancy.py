"""Tenant keys: one string object per tenant, however many requests and stores read it."""

from __future__ import annotations

from loomflow.kernel.tenancy import ANONYMOUS_SENTINEL, tenant_key
from loomflow.v1 import tenancy_pb2


def test_every_read_of_a_tenant_returns_the_same_string_object() -> None:
    # protobuf hands out a new str per read; every per-tenant dict (budget, audit index, limits,
    # metrics, caches) keeping its own copy cost ~0.6 KB of heap per tenant in the race.
    first = tenant_key(tenancy_pb2.UserScope(user_id="".join(["user-", "00042"])))
    second = tenant_key(tenancy_pb2.UserScope(user_id="user-0004" + "2"))
    assert first == second == "user-00042"
    assert first is second


def test_the_anonymous_partition_keeps_its_sentinel() -> None:
    assert tenant_key(tenancy_pb2.UserScope(anonymous=tenancy_pb2.Anonymous())) == ANONYMOUS_SENTINEL
