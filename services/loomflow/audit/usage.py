"""Usage per tenant over a time range, summed from the Agent's ``model_call`` entries.

Each model turn of a run appends one ``model_call`` entry whose payload carries the model and
its tokens (agent/runner.py), so the audit log already holds a tamper-evident record of usage
per tenant and per time: summing it needs no other store. Cost is not in the log; callers
price the tokens with the Budget's price table (``loomflow usage`` does).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from google.protobuf import json_format, struct_pb2

from loomflow.audit.models import QueryFilter, ReadEntry
from loomflow.kernel.errors import InvalidArgument

MODEL_CALL_ACTION = "model_call"
DEFAULT_PAGE_SIZE = 100
READ_PAGE = 1000
SCANNED_PER_PAGE = 10
"""Tenants read per reported row at most, so one page stays bounded when most tenants were idle."""

Query = Callable[[QueryFilter], Awaitable[list[ReadEntry]]]


@dataclass
class ModelTotals:
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0


@dataclass
class TenantTotals:
    tenant: str
    run_ids: set[str] = field(default_factory=set)
    models: dict[str, ModelTotals] = field(default_factory=dict)
    shredded_model_calls: int = 0

    @property
    def empty(self) -> bool:
        return not self.models and not self.shredded_model_calls

    def add(self, item: ReadEntry) -> None:
        if item.entry.run_id:
            self.run_ids.add(item.entry.run_id)
        if item.shredded:
            self.shredded_model_calls += 1
            return
        payload = json_format.MessageToDict(struct_pb2.Struct.FromString(item.payload)) if item.payload else {}
        totals = self.models.setdefault(str(payload.get("model", "")), ModelTotals())
        totals.model_calls += 1
        totals.input_tokens += _count(payload, "input_tokens")
        totals.output_tokens += _count(payload, "output_tokens")
        totals.cached_input_tokens += _count(payload, "cached_input_tokens")


def _count(payload: dict[str, object], name: str) -> int:
    value = payload.get(name, 0)
    return int(value) if isinstance(value, int | float) else 0


async def tenant_usage(query: Query, tenant: str, from_us: int, to_us: int) -> TenantTotals:
    """One tenant's totals in [from_us, to_us) (0: unbounded on that side)."""
    totals = TenantTotals(tenant)
    after = 0
    while True:
        page = await query(
            QueryFilter(
                tenant, action=MODEL_CALL_ACTION, after_seq=after, limit=READ_PAGE, from_us=from_us, to_us=to_us
            )
        )
        for item in page:
            totals.add(item)
        if len(page) < READ_PAGE:
            return totals
        after = page[-1].entry.seq


def encode_token(tenant: str) -> str:
    return base64.urlsafe_b64encode(tenant.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    if not token:
        return ""
    try:
        # validate: a token with characters outside the alphabet is refused, not read as empty.
        return base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, ValueError):
        raise InvalidArgument.field("page_token", "not a page token the server issued", "page_token.invalid") from None


async def usage_page(
    query: Query, tenants: list[str], from_us: int, to_us: int, page_size: int
) -> tuple[list[TenantTotals], str]:
    """Rows for the sorted ``tenants`` (those after the page token), at most ``page_size``, skipping
    tenants without model calls in the range; the token resumes after the last tenant read."""
    rows: list[TenantTotals] = []
    budget = page_size * SCANNED_PER_PAGE
    for scanned, tenant in enumerate(tenants, start=1):
        totals = await tenant_usage(query, tenant, from_us, to_us)
        if not totals.empty:
            rows.append(totals)
        more = scanned < len(tenants)
        if more and (len(rows) >= page_size or scanned >= budget):
            return rows, encode_token(tenant)
    return rows, ""
