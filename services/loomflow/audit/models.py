"""The audit log's domain types: plain dataclasses, no gRPC, no storage.

A tenant is its partition key (:func:`loomflow.kernel.tenancy.tenant_key`): the
user id, or the storage-only sentinel for the anonymous partition. Times are
integer microseconds since the Unix epoch, so every sink and the canonical
encoding agree to the unit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

MAC_SIZE = 32
GENESIS_MAC = bytes(MAC_SIZE)
"""The ``prev_mac`` of every chain's first entry."""


@dataclass(frozen=True, slots=True)
class Draft:
    """What a caller asks to append; the log assigns seq, ts and the macs."""

    tenant: str
    actor: str
    action: str
    session_id: str = ""
    run_id: str = ""
    decision_id: str = ""
    payload: bytes = b""
    """Plaintext payload bytes (opaque to the log); encrypted before it is stored."""


@dataclass(slots=True)
class Entry:
    """One stored link of a tenant's chain, exactly as a sink keeps it.

    Not frozen on purpose: verification builds millions of these, and a frozen
    dataclass's ``__init__`` costs four times as much. Treat it as a value.

    ``payload`` is the *encrypted* payload (empty when the entry had none), so the
    mac covers ciphertext and a crypto-shredded chain still verifies.
    """

    seq: int
    ts_us: int
    user_id: str
    session_id: str
    run_id: str
    actor: str
    action: str
    payload: bytes
    decision_id: str
    prev_mac: bytes
    mac: bytes


@dataclass(frozen=True, slots=True)
class Head:
    """The last entry of a tenant's chain: the next entry gets ``seq + 1`` and links to ``mac``."""

    seq: int = 0
    mac: bytes = GENESIS_MAC


EMPTY_HEAD = Head()


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A tenant's data key, encrypted (wrapped) under the master payload key."""

    tenant: str
    key_id: bytes
    wrapped: bytes


@dataclass(frozen=True, slots=True)
class Batch:
    """What one group commit makes durable together: new data keys first, then entries."""

    entries: list[Entry]
    new_keys: list[WrappedKey] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Appended:
    seq: int
    ts_us: int
    mac: bytes


@dataclass(frozen=True, slots=True)
class ReadEntry:
    """An entry as callers read it: the stored link plus its decrypted payload."""

    entry: Entry
    payload: bytes
    shredded: bool
    """True when the payload was encrypted under a key that Forget destroyed."""


@dataclass(frozen=True, slots=True)
class QueryFilter:
    """Which entries a query returns. ``tenant`` None means every tenant (operators only)."""

    tenant: str | None
    session_id: str = ""
    run_id: str = ""
    action: str = ""
    after_seq: int = 0
    limit: int = 100
    from_us: int = 0
    """Entries with ``ts_us`` at or after this (0: no lower bound)."""
    to_us: int = 0
    """Entries with ``ts_us`` before this (0: no upper bound)."""

    def matches(self, entry: Entry) -> bool:
        return (
            (self.tenant is None or entry.user_id == self.tenant)
            and entry.seq > self.after_seq
            and entry.ts_us >= self.from_us
            and (not self.to_us or entry.ts_us < self.to_us)
            and (not self.session_id or entry.session_id == self.session_id)
            and (not self.run_id or entry.run_id == self.run_id)
            and (not self.action or entry.action == self.action)
        )


@dataclass(frozen=True, slots=True)
class SignedHead:
    """One chain head inside a checkpoint, named by a keyed digest of the tenant."""

    tenant_digest: str
    seq: int
    mac: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    checkpoint_id: str
    created_us: int
    heads: tuple[SignedHead, ...]
    signature: bytes
    public_key: bytes

    def head_for(self, digest: str) -> SignedHead | None:
        for head in self.heads:
            if head.tenant_digest == digest:
                return head
        return None


class Problem(enum.Enum):
    """Why a chain failed verification. The value is the reason clients see."""

    SEQ_GAP = "seq gap"
    REORDERED = "reordered"
    DUPLICATE = "duplicate seq"
    BROKEN_LINK = "broken link"
    MAC_MISMATCH = "mac mismatch"
    FOREIGN = "foreign entry"
    TRUNCATED = "truncated below checkpoint"
    CHECKPOINT_MISMATCH = "differs from checkpoint"
    UNREADABLE = "unreadable entry"


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The verdict on one tenant's chain: the first bad seq and why, or ok."""

    tenant: str | None
    """None for a chain the checkpoint names but the log no longer holds at all."""
    tenant_digest: str
    entries_checked: int
    head: Head
    problem: Problem | None = None
    first_bad_seq: int = 0
    detail: str = ""
    bad_mac: bytes = b""
    """The mac stored on the first bad entry, to find where a replayed entry came from."""

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def reason(self) -> str:
        if self.problem is None:
            return ""
        return f"{self.problem.value}: {self.detail}" if self.detail else self.problem.value


@dataclass(frozen=True, slots=True)
class LogReport:
    """The verdict on a whole log (or the chains asked for)."""

    chains: list[ChainReport]
    checkpoint_id: str = ""
    checkpoint_error: str = ""
    """Why the checkpoint could not be used (bad signature, untrusted key); empty when fine."""
    unreadable: list[str] = field(default_factory=list)
    """Storage records that could not be parsed at all (file lines), described."""

    @property
    def ok(self) -> bool:
        return not self.checkpoint_error and not self.unreadable and all(c.ok for c in self.chains)

    @property
    def entries_checked(self) -> int:
        return sum(c.entries_checked for c in self.chains)
