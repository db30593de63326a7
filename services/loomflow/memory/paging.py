"""Paging of list answers: page sizes, opaque page tokens, and pages that fit one message.

A page token is the base64url of a small JSON document naming the RPC, a digest of
the tenant it was issued to, the filters of the request, and the key of the last
record returned. Pages follow a stable order (the records' keys), so a token
resumes exactly after what the caller has seen, even if records were written in
between. A token of another tenant, another RPC or other filters is refused with
INVALID_ARGUMENT: it can never read another tenant's records (every read is keyed
by the caller's own tenant anyway) and it says nothing about them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from google.protobuf.message import Message

from loomflow.kernel.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

T = TypeVar("T")


def page_size(requested: int, deprecated_limit: int = 0) -> int:
    """The page size to serve: ``page_size``, else the deprecated ``limit``, else the default; at most the max."""
    return min(requested or deprecated_limit or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _tenant_digest(tenant: str) -> str:
    return hashlib.sha256(tenant.encode()).hexdigest()[:32]


def encode_token(rpc: str, tenant: str, filters: Sequence[Any], key: Sequence[Any]) -> str:
    document = {"r": rpc, "t": _tenant_digest(tenant), "f": list(filters), "k": list(key)}
    raw = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, rpc: str, tenant: str, filters: Sequence[Any]) -> list[Any] | None:
    """The key a token resumes after (None for no token); INVALID_ARGUMENT for a token not issued
    for this tenant, RPC and filters."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = json.loads(raw)
        matches = document["r"] == rpc and document["t"] == _tenant_digest(tenant) and document["f"] == list(filters)
        key = document["k"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgument.field("page_token", "not a page token this service issued") from None
    if not matches or not isinstance(key, list):
        raise InvalidArgument.field("page_token", "this page token was issued for another request")
    return key


def fit(
    records: Sequence[T], size: int, byte_budget: int, as_message: Callable[[T], Message]
) -> tuple[list[Message], bool]:
    """The first records that fit in ``size`` items and ``byte_budget`` serialised bytes (at
    least one, so paging always advances), and whether more remain."""
    page: list[Message] = []
    used = 0
    for record in records[:size]:
        message = as_message(record)
        cost = message.ByteSize() + 8  # the field tag and length of a repeated entry
        if page and used + cost > byte_budget:
            return page, True
        page.append(message)
        used += cost
    return page, len(records) > len(page)
