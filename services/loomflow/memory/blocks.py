"""Working-block rules every backend applies: optimistic versions.

A block's version starts at 1 and grows by one on every write. A write or delete
that names an expected version fails with ABORTED unless it matches, so two
writers that read the same version cannot both win.
"""

from __future__ import annotations

from loomflow.kernel.errors import Aborted, NotFound, ResourceExhausted
from loomflow.memory.models import Block, BlockWrite, Micros

BYTES_LIMIT = "max_block_bytes_per_user"


def next_block(tenant: str, write: BlockWrite, current_version: int | None, at: Micros, other_bytes: int = 0) -> Block:
    """The block a write produces over the stored version (None: no such block), or ABORTED; or
    RESOURCE_EXHAUSTED when the tenant's blocks would hold more than ``write.max_tenant_bytes``.
    ``other_bytes``: UTF-8 bytes of the tenant's other blocks, read in the write's own atomic
    section (only needed when the write carries a cap)."""
    expected = write.expected_version
    if expected is not None and expected != (current_version or 0):
        found = "does not exist" if current_version is None else f"is at version {current_version}"
        raise Aborted(f"block {write.label!r} {found}, expected version {expected}; re-read and retry")
    cap = write.max_tenant_bytes
    if cap and other_bytes + len(write.content.encode()) > cap:
        raise ResourceExhausted(
            f"working blocks would hold more than {cap} bytes for this user "
            f"({other_bytes} in other blocks); delete or shrink some first",
            limit=BYTES_LIMIT,
        )
    return Block(
        tenant=tenant,
        label=write.label,
        session_id=write.session_id,
        content=write.content,
        version=(current_version or 0) + 1,
        updated_at=at,
    )


def check_delete(label: str, current_version: int | None, expected_version: int | None) -> int:
    """The version a delete removes, or NOT_FOUND / ABORTED."""
    if current_version is None:
        raise NotFound(f"block {label!r} not found")
    if expected_version is not None and expected_version != current_version:
        raise Aborted(f"block {label!r} is at version {current_version}, expected {expected_version}")
    return current_version


def content_bytes(content: str) -> int:
    return len(content.encode())


def block_not_found(label: str) -> NotFound:
    return NotFound(f"block {label!r} not found")
