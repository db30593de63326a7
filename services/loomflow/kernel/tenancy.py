"""Tenant keys: how a wire ``UserScope`` becomes the partition key every store uses.

The anonymous partition is stored under a reserved sentinel that no request can
name (the wire contract rejects it), so it is a real bucket that cannot be
impersonated. Stores key everything by :func:`tenant_key` and never see a
``UserScope``.
"""

from __future__ import annotations

import sys
from typing import Protocol

from loomflow.kernel.errors import InvalidArgument
from loomflow.v1 import tenancy_pb2

ANONYMOUS_SENTINEL = "__jeeves_anon_user__"
"""Storage-only name of the anonymous partition. Never valid on the wire."""

ANONYMOUS_LABEL = "anonymous"
"""How logs and metrics name the anonymous partition (never the sentinel)."""

ALL_TENANTS_LABEL = "*all-tenants*"
"""How logs and metrics name an operator's all-tenants call. Never a partition key: stores get
``None`` for "every tenant", so no user id (this text included) can stand for all of them."""

ALL_TENANTS_UNSUPPORTED = "scope.all_tenants.unsupported"


class ScopedRequest(Protocol):
    @property
    def scope(self) -> tenancy_pb2.UserScope: ...


def tenant_key(scope: tenancy_pb2.UserScope) -> str:
    """The partition key of a validated scope: the user id, or the sentinel for anonymous.

    An all-tenants scope has no partition key: a handler that accepts it asks
    :func:`is_all_tenants` first; anywhere else it is refused here too (the kernel refuses it
    before the handler runs, this is the second lock)."""
    kind = scope.WhichOneof("kind")
    if kind == "anonymous":
        return ANONYMOUS_SENTINEL
    if kind == "all_tenants":
        raise InvalidArgument.field("scope.all_tenants", "this RPC acts for one tenant", ALL_TENANTS_UNSUPPORTED)
    # Interned: protobuf hands out a new string on every read, and each per-tenant dict of every
    # co-hosted service (stores, indexes, limits, metrics, caches) would keep its own copy.
    return sys.intern(scope.user_id)


def is_all_tenants(scope: tenancy_pb2.UserScope) -> bool:
    """Whether the scope is an operator's every-tenant choice (``scope.all_tenants``)."""
    return bool(scope.WhichOneof("kind") == "all_tenants")


def scope_for(key: str) -> tenancy_pb2.UserScope:
    """The wire scope of a stored partition key (inverse of :func:`tenant_key`)."""
    scope = tenancy_pb2.UserScope()
    write_scope(scope, key)
    return scope


def write_scope(scope: tenancy_pb2.UserScope, key: str) -> None:
    """Sets a (sub-message) scope to the partition key's, in place: no message built and copied."""
    if key == ANONYMOUS_SENTINEL:
        scope.anonymous.SetInParent()
    else:
        scope.user_id = key


def display_tenant(key: str) -> str:
    """The tenant as logs and metrics show it."""
    return ANONYMOUS_LABEL if key == ANONYMOUS_SENTINEL else key
