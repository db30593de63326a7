"""Pure verification of chains: the first bad seq of each tenant's chain, and why.

Nothing here does I/O: sinks (and the offline CLI) feed entries in storage
order. For each chain, entry ``n`` must carry seq ``n``, link to entry
``n-1``'s mac, and carry the mac its fields recompute to; against a signed
checkpoint, the chain must reach the checkpoint's head and agree with it there.

What each finding means:

* ``seq gap``: an entry is missing (deleted, or moved to another tenant by
  editing its user_id); the first bad seq is the missing one.
* ``reordered``: the missing entry turns up later in storage order.
* ``duplicate seq``: an entry repeats a seq already seen.
* ``broken link``: the entry's prev_mac is not its predecessor's mac (entries
  swapped, renumbered or inserted).
* ``mac mismatch``: a covered field (payload, user_id, actor, …) was altered.
* ``foreign entry``: a bad entry is a copy of an entry of another tenant's
  chain (replayed); found by :func:`find_foreign` / the sink's mac lookup.
* ``truncated below checkpoint``: the chain ends before the checkpoint's head.
* ``differs from checkpoint``: the entry at the checkpoint's head seq is not
  the one the checkpoint signed (the tail was cut and rewritten).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from loomflow.audit.chain import entry_mac, tenant_digest
from loomflow.audit.models import GENESIS_MAC, ChainReport, Checkpoint, Entry, Head, Problem, SignedHead


class ChainVerifier:
    """Verifies one tenant's chain incrementally (constant memory), entry by entry."""

    __slots__ = (
        "_bad_mac",
        "_checkpoint",
        "_count",
        "_detail",
        "_digest",
        "_first_bad",
        "_head_mac",
        "_head_seq",
        "_key",
        "_problem",
        "_tenant",
    )

    def __init__(self, key: bytes, tenant: str, checkpoint: Checkpoint | None = None) -> None:
        self._key = key
        self._tenant = tenant
        self._digest = tenant_digest(key, tenant)
        self._checkpoint: SignedHead | None = checkpoint.head_for(self._digest) if checkpoint else None
        self._count = 0
        # The head as two fields, not a Head: a frozen dataclass per entry was an eighth of verify's time.
        self._head_seq, self._head_mac = 0, GENESIS_MAC
        self._problem: Problem | None = None
        self._first_bad = 0
        self._detail = ""
        self._bad_mac = b""

    def _fail(self, problem: Problem, seq: int, detail: str, bad_mac: bytes = b"") -> None:
        self._problem, self._first_bad, self._detail, self._bad_mac = problem, seq, detail, bad_mac

    def feed(self, entry: Entry) -> None:
        self._count += 1
        if self._problem is not None:
            if self._problem is Problem.SEQ_GAP and entry.seq == self._first_bad:
                self._problem = Problem.REORDERED
                self._detail = f"entry {entry.seq} is stored after a later entry"
            return
        expected = self._head_seq + 1
        if entry.user_id != self._tenant:
            self._fail(Problem.FOREIGN, expected, "the entry names another tenant", entry.mac)
        elif entry.seq > expected:
            self._fail(Problem.SEQ_GAP, expected, f"entry {expected} is missing (next stored is {entry.seq})")
        elif entry.seq < expected:
            self._fail(Problem.DUPLICATE, expected, f"entry {entry.seq} appears again where {expected} was expected")
        elif entry.prev_mac != self._head_mac:
            what = "the chain's start" if expected == 1 else f"entry {expected - 1}"
            self._fail(Problem.BROKEN_LINK, expected, f"prev_mac does not match {what}", entry.mac)
        elif entry_mac(self._key, entry) != entry.mac:
            self._fail(Problem.MAC_MISMATCH, expected, "the entry was altered after it was written", entry.mac)
        elif self._checkpoint is not None and entry.seq == self._checkpoint.seq and entry.mac != self._checkpoint.mac:
            self._fail(Problem.CHECKPOINT_MISMATCH, expected, "the checkpoint signed a different entry at this seq")
        else:
            self._head_seq, self._head_mac = entry.seq, entry.mac

    def finish(self) -> ChainReport:
        signed = self._checkpoint
        if self._problem is None and signed is not None and self._head_seq < signed.seq:
            self._fail(
                Problem.TRUNCATED,
                self._head_seq + 1,
                f"the checkpoint signed {signed.seq} entries, the log ends at {self._head_seq}",
            )
        return ChainReport(
            tenant=self._tenant,
            tenant_digest=self._digest,
            entries_checked=self._count,
            head=Head(self._head_seq, self._head_mac),
            problem=self._problem,
            first_bad_seq=self._first_bad,
            detail=self._detail,
            bad_mac=self._bad_mac,
        )


def verify_chain(
    key: bytes, tenant: str, entries: Iterable[Entry], checkpoint: Checkpoint | None = None
) -> ChainReport:
    """One tenant's chain, given its entries in storage order."""
    verifier = ChainVerifier(key, tenant, checkpoint)
    for entry in entries:
        verifier.feed(entry)
    return verifier.finish()


class LogVerifier:
    """Verifies many tenants' chains from one stream of entries in storage order.

    ``only`` restricts it to some tenants. With a checkpoint and no ``only``, a chain the
    checkpoint names but the stream never shows is reported too (``tenant`` None,
    named by its digest): the log lost a whole chain.
    """

    def __init__(
        self,
        key: bytes,
        checkpoint: Checkpoint | None = None,
        only: Iterable[str] | None = None,
    ) -> None:
        self._key = key
        self._checkpoint = checkpoint
        self._wanted = set(only) if only is not None else None
        self._chains: dict[str, ChainVerifier] = {t: ChainVerifier(key, t, checkpoint) for t in self._wanted or ()}

    def feed(self, entry: Entry) -> None:
        verifier = self._chains.get(entry.user_id)
        if verifier is None:
            if self._wanted is not None:
                return
            verifier = self._chains[entry.user_id] = ChainVerifier(self._key, entry.user_id, self._checkpoint)
        verifier.feed(entry)

    def finish(self) -> list[ChainReport]:
        reports = [self._chains[t].finish() for t in sorted(self._chains)]
        if self._checkpoint is not None and self._wanted is None:
            reports.extend(missing_chains(self._checkpoint, reports))
        return reports


def missing_chains(checkpoint: Checkpoint, reports: Iterable[ChainReport]) -> list[ChainReport]:
    """Reports for the chains a checkpoint signed that no report covers: the log lost them whole."""
    present = {r.tenant_digest for r in reports}
    return [
        ChainReport(
            tenant=None,
            tenant_digest=head.tenant_digest,
            entries_checked=0,
            head=Head(0, GENESIS_MAC),
            problem=Problem.TRUNCATED,
            first_bad_seq=1,
            detail=f"the checkpoint signed a chain of {head.seq} entries that the log no longer holds",
        )
        for head in checkpoint.heads
        if head.tenant_digest not in present
    ]


def verify_entries(
    key: bytes,
    entries: Iterable[Entry],
    checkpoint: Checkpoint | None = None,
    only: Iterable[str] | None = None,
) -> list[ChainReport]:
    """Every chain in a stream of entries from many tenants (storage order), or only some."""
    verifier = LogVerifier(key, checkpoint, only)
    for entry in entries:
        verifier.feed(entry)
    return verifier.finish()


SUSPECT = (Problem.BROKEN_LINK, Problem.MAC_MISMATCH, Problem.FOREIGN)
"""Findings whose bad entry may be a copy of another tenant's entry."""


def suspects(reports: Iterable[ChainReport]) -> dict[bytes, ChainReport]:
    """The bad entries worth looking up elsewhere, by the mac they carry."""
    return {r.bad_mac: r for r in reports if r.problem in SUSPECT and r.bad_mac}


def mark_foreign(report: ChainReport, owner_digest: str, owner_seq: int) -> ChainReport:
    """The report, restated: its bad entry is a replayed copy of another tenant's entry."""
    return replace(
        report,
        problem=Problem.FOREIGN,
        detail=f"a copy of entry {owner_seq} of another tenant's chain (tenant digest {owner_digest[:16]})",
    )


def find_foreign(key: bytes, reports: list[ChainReport], entries: Iterable[Entry]) -> list[ChainReport]:
    """Second pass over all entries: which bad entries are copies of another tenant's entry."""
    wanted = suspects(reports)
    if not wanted:
        return reports
    owners: dict[bytes, list[tuple[str, int]]] = {}
    for entry in entries:
        if entry.mac in wanted:
            owners.setdefault(entry.mac, []).append((entry.user_id, entry.seq))
    return reclassify(key, reports, owners)


def reclassify(
    key: bytes, reports: list[ChainReport], owners: Mapping[bytes, Sequence[tuple[str, int]]]
) -> list[ChainReport]:
    """Applies mac → [(tenant, seq) storing it] lookups to the reports: a bad entry whose mac
    another tenant's chain also stores is a replayed copy (see :func:`find_foreign`)."""
    result: list[ChainReport] = []
    for report in reports:
        if report.problem in SUSPECT:
            foreign = [o for o in owners.get(report.bad_mac, ()) if o[0] != report.tenant]
            if foreign:
                report = mark_foreign(report, tenant_digest(key, foreign[0][0]), foreign[0][1])
        result.append(report)
    return result
