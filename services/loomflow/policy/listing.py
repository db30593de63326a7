"""ListApprovals: which approvals a page holds, and the page token that resumes it.

Pages are ordered newest first by (created_at, tenant, id), a total order, so a
token (the last row's key) resumes exactly after it even while approvals are
created or swept between pages. The token also carries a digest of the filters:
a token used with other filters is refused instead of silently skipping rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from loomflow.kernel.errors import InvalidArgument
from loomflow.policy.models import Approval, ApprovalStatus

if TYPE_CHECKING:
    from loomflow.policy.store.base import PolicyStore

DEFAULT_PAGE_SIZE = 100
TOKEN_REASON = "page_token.invalid"


@dataclass(frozen=True)
class PageKey:
    """Where a page ended: the key of its last (oldest) approval."""

    created_at: int
    tenant: str
    approval_id: str


@dataclass(frozen=True)
class ApprovalListing:
    """Filters and paging of one ListApprovals call. ``tenant`` None: every tenant (operator)."""

    tenant: str | None
    statuses: frozenset[ApprovalStatus] = field(default_factory=frozenset)
    tool_name: str = ""
    created_from: int = 0
    """Unix ms, inclusive (0: no lower bound)."""
    created_to: int = 0
    """Unix ms, exclusive (0: no upper bound)."""
    page_size: int = DEFAULT_PAGE_SIZE
    after: PageKey | None = None

    def digest(self) -> str:
        """What a page token is bound to: every filter, not the position."""
        filters = [
            self.tenant,
            sorted(s.value for s in self.statuses),
            self.tool_name,
            self.created_from,
            self.created_to,
        ]
        return hashlib.sha256(json.dumps(filters).encode()).hexdigest()[:16]


def encode_token(listing: ApprovalListing, last: Approval) -> str:
    body = {"c": last.created_at, "t": last.tenant, "i": last.id, "f": listing.digest()}
    return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(listing: ApprovalListing, token: str) -> PageKey | None:
    """The position a token names (None for an empty token); INVALID_ARGUMENT for one this
    service did not issue for these filters."""
    if not token:
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key = PageKey(int(body["c"]), str(body["t"]), str(body["i"]))
        digest = body["f"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidArgument.field("page_token", "not a page token ListApprovals issued", TOKEN_REASON) from None
    if digest != listing.digest():
        raise InvalidArgument.field(
            "page_token", "the token was issued for other filters; start again without it", TOKEN_REASON
        )
    return key


@dataclass(frozen=True)
class ApprovalPage:
    approvals: list[Approval]
    next_page_token: str


async def list_page(store: PolicyStore, listing: ApprovalListing, token: str) -> ApprovalPage:
    """The page ``token`` (empty: the first) points at; the next token is empty on the last page."""
    if listing.created_from and listing.created_to and listing.created_to <= listing.created_from:
        raise InvalidArgument.field("created_to", "must be after created_from", "created_to.after_from")
    listing = replace(listing, after=decode_token(listing, token))
    # One row more than the page tells whether another page follows, without a count.
    rows = await store.list_approvals(replace(listing, page_size=listing.page_size + 1))
    page = rows[: listing.page_size]
    more = len(rows) > listing.page_size
    return ApprovalPage(page, encode_token(listing, page[-1]) if more else "")
