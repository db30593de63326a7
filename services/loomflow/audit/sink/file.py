"""The file sink: one JSONL log per deployment, written with group commit.

Layout of the log folder (``LOOMFLOW_AUDIT_DSN=file:///path``, default
``<data_dir>/audit``):

* ``entries.jsonl``: every tenant's entries, one per line (see ``jsonl.py``).
  One file for all tenants, so one ``fdatasync`` makes a whole batch durable no
  matter how many tenants it touches (a file per tenant would cost one fsync
  per tenant per batch).
* ``keys.jsonl``: the wrapped per-tenant data keys; ``Forget`` rewrites it
  without the tenant's keys (write, fsync, rename, fsync the folder).
* ``checkpoints.jsonl``: signed checkpoints, newest last.
* ``meta.json``: public fingerprints of the keys the log was written with.
* ``LOCK``: an exclusive ``flock`` held by the one writing process.

Crash safety: a batch is written at the end of the file and ``fdatasync``-ed
before any of its appends is acknowledged. If the write or the sync fails, the
file is cut back to where the batch began (and the sink refuses further writes
if even that fails). On start, bytes after the last newline are a write torn by
a crash, never acknowledged: they are moved to ``entries.jsonl.torn-<time>``
and cut off, so verification of acknowledged entries is unaffected. A complete
line that does not parse is left in place (evidence) and reported by Verify.

The process keeps a small in-memory index (per tenant: offsets, lengths and
seqs of its lines, and its head) so queries read only the tenant's lines. The
index is rebuilt by one scan of the file on start.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import fcntl
import json
import logging
import os
import time
from array import array
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from loomflow.audit import checkpoint as checkpoints
from loomflow.audit.crypto import period_of
from loomflow.audit.models import Batch, ChainReport, Checkpoint, Entry, Head, QueryFilter, WrappedKey
from loomflow.audit.sink import jsonl
from loomflow.audit.sink.base import BadEntry, SinkBroken
from loomflow.audit.verify import find_foreign, suspects, verify_entries
from loomflow.kernel.config import ConfigError

log = logging.getLogger("loomflow.audit")

ENTRIES = "entries.jsonl"
KEYS = "keys.jsonl"
CHECKPOINTS = "checkpoints.jsonl"
META = "meta.json"
LOCK = "LOCK"


@dataclass(slots=True)
class _TenantIndex:
    offsets: array[int] = field(default_factory=lambda: array("q"))
    lengths: array[int] = field(default_factory=lambda: array("l"))
    seqs: array[int] = field(default_factory=lambda: array("q"))
    head: Head = field(default_factory=Head)
    with_payload: int = 0
    ordered: bool = True
    """Seqs strictly increase in storage order (always, unless the file was edited)."""

    def add(self, offset: int, length: int, entry: Entry) -> None:
        if self.seqs and entry.seq <= self.seqs[-1]:
            self.ordered = False
        self.offsets.append(offset)
        self.lengths.append(length)
        self.seqs.append(entry.seq)
        self.head = Head(entry.seq, entry.mac)
        if entry.payload:
            self.with_payload += 1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _replace_durably(path: Path, data: bytes) -> None:
    """Atomically replaces a file's content: write a temporary file, fsync, rename, fsync the folder."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _expired(key: WrappedKey, day: int) -> bool:
    """Whether this is a period key of a UTC day before ``day`` (random pre-period keys never are)."""
    period = period_of(key.key_id)
    return period is not None and period < day


def _key_line(key: WrappedKey) -> bytes:
    record = {"user_id": key.tenant, "key_id": key.key_id.hex(), "wrapped": key.wrapped.hex()}
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


class FileSink:
    """A JSONL audit log in one folder. ``readonly`` opens it for offline verification:
    no lock, no recovery, nothing written."""

    def __init__(self, directory: Path, *, readonly: bool = False) -> None:
        self.directory = directory
        self.readonly = readonly
        self.description = f"file://{directory}"
        self._entries_path = directory / ENTRIES
        self._fd = -1
        self._lock_fd = -1
        self._size = 0
        self._index: dict[str, _TenantIndex] = {}
        self._keys: dict[str, list[WrappedKey]] = {}
        self._latest: Checkpoint | None = None
        self._meta: dict[str, str] = {}
        self._broken = ""
        # Durable writes run on a thread of their own, so a busy shared pool (other services'
        # threads, a long Verify) never delays a group commit.
        self._write_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-fsync")
        self.torn_bytes = 0
        """Bytes of a torn (unacknowledged) last write found when opening."""

    # -- lifecycle --------------------------------------------------------

    async def open(self) -> None:
        await asyncio.to_thread(self._open_sync)

    def _open_sync(self) -> None:
        if self.readonly:
            if not self._entries_path.is_file():
                raise ConfigError(f"no audit log at {self.directory} (expected {ENTRIES})")
            self._fd = os.open(self._entries_path, os.O_RDONLY)
            self._size = os.fstat(self._fd).st_size
            self._load_checkpoints()
            self._meta = self._read_meta()
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise ConfigError(f"the audit log at {self.directory} is in use by another process") from None
        created = not self._entries_path.exists()
        self._fd = os.open(self._entries_path, os.O_RDWR | os.O_CREAT, 0o600)
        if created:
            _fsync_dir(self.directory)
        self._size = self._recover_entries()
        self._load_keys()
        self._load_checkpoints()
        self._meta = self._read_meta()

    async def close(self) -> None:
        self._write_thread.shutdown(wait=True)
        for fd in (self._fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)  # closing the lock file releases the flock
        self._fd = self._lock_fd = -1

    # -- recovery ---------------------------------------------------------

    def _cut_torn_tail(self, path: Path, fd: int, valid: int, size: int) -> None:
        """Moves bytes after the last complete line aside, then cuts the file there."""
        if size <= valid:
            return
        torn = os.pread(fd, size - valid, valid)
        aside = path.with_name(f"{path.name}.torn-{time.time_ns()}")
        aside.write_bytes(torn)
        os.ftruncate(fd, valid)
        os.fsync(fd)
        _fsync_dir(path.parent)
        self.torn_bytes += len(torn)
        log.warning(
            "audit log %s: cut %d bytes of a write torn by a crash (never acknowledged); kept in %s",
            path,
            len(torn),
            aside.name,
        )

    def _recover_entries(self) -> int:
        """Builds the index; cuts a torn last line. Returns the size of the complete lines."""
        valid = 0
        unreadable = 0
        with open(self._entries_path, "rb") as stream:
            for offset, raw, complete in jsonl.lines(stream):
                if not complete:
                    break
                valid = offset + len(raw) + 1
                try:
                    entry = jsonl.decode(raw)
                except ValueError:
                    unreadable += 1
                    continue
                index = self._index.get(entry.user_id)
                if index is None:
                    index = self._index[entry.user_id] = _TenantIndex()
                index.add(offset, len(raw) + 1, entry)
        if unreadable:
            log.error("audit log %s has %d unreadable lines; Verify reports them", self._entries_path, unreadable)
        self._cut_torn_tail(self._entries_path, self._fd, valid, os.fstat(self._fd).st_size)
        return valid

    def _read_records(self, path: Path, *, repair: bool) -> list[dict[str, str]]:
        """The JSON objects of a small JSONL side file; cuts a torn last line when ``repair``."""
        if not path.exists():
            return []
        records: list[dict[str, str]] = []
        valid = 0
        with open(path, "rb") as stream:
            for offset, raw, complete in jsonl.lines(stream):
                if not complete:
                    break
                valid = offset + len(raw) + 1
                with contextlib.suppress(ValueError):
                    record = json.loads(raw)
                    if isinstance(record, dict):
                        records.append(record)
        if repair:
            fd = os.open(path, os.O_RDWR)
            try:
                self._cut_torn_tail(path, fd, valid, os.fstat(fd).st_size)
            finally:
                os.close(fd)
        return records

    def _load_keys(self) -> None:
        for record in self._read_records(self.directory / KEYS, repair=True):
            tenant = record["user_id"]
            key = WrappedKey(tenant, bytes.fromhex(record["key_id"]), bytes.fromhex(record["wrapped"]))
            self._keys.setdefault(tenant, []).append(key)

    def _load_checkpoints(self) -> None:
        for record in self._read_records(self.directory / CHECKPOINTS, repair=not self.readonly):
            with contextlib.suppress(ValueError):
                self._latest = checkpoints.from_dict(record)

    def _read_meta(self) -> dict[str, str]:
        path = self.directory / META
        if not path.exists():
            return {}
        data = json.loads(path.read_text())
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    async def init_meta(self, values: dict[str, str]) -> dict[str, str]:
        if not self._meta and not self.readonly:
            text = json.dumps(values, indent=2, sort_keys=True) + "\n"
            await asyncio.to_thread(_replace_durably, self.directory / META, text.encode())
            self._meta = dict(values)
        return dict(self._meta)

    # -- writing ----------------------------------------------------------

    def _check_writable(self) -> None:
        if self.readonly:
            raise SinkBroken(f"{self.description} is open read-only")
        if self._broken:
            raise SinkBroken(self._broken)

    async def write_batch(self, batch: Batch) -> None:
        self._check_writable()
        start = self._size
        try:
            encoded = [jsonl.encode(e) for e in batch.entries]
        except (TypeError, ValueError) as exc:  # e.g. a lone surrogate: fail that entry, not the batch
            raise BadEntry(f"an entry cannot be encoded: {exc}") from None
        blob = b"".join(encoded)
        key_blob = b"".join(_key_line(k) for k in batch.new_keys)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._write_thread, self._write_sync, start, blob, key_blob)
        except OSError as exc:
            await loop.run_in_executor(self._write_thread, self._roll_back, start, exc)
            raise SinkBroken(f"writing the audit log failed: {exc}") from exc
        for key in batch.new_keys:
            self._keys.setdefault(key.tenant, []).append(key)
        offset = start
        for entry, line in zip(batch.entries, encoded, strict=True):
            index = self._index.get(entry.user_id)
            if index is None:
                index = self._index[entry.user_id] = _TenantIndex()
            index.add(offset, len(line), entry)
            offset += len(line)
        self._size = offset

    def _write_sync(self, start: int, blob: bytes, key_blob: bytes) -> None:
        if key_blob:
            # Keys first: an entry must never be durable before the key that decrypts it.
            fd = os.open(self.directory / KEYS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, key_blob)
                os.fdatasync(fd)
            finally:
                os.close(fd)
        _write_all(self._fd, blob, start)
        os.fdatasync(self._fd)

    def _roll_back(self, start: int, cause: OSError) -> None:
        try:
            os.ftruncate(self._fd, start)
            os.fsync(self._fd)
        except OSError as exc:
            self._broken = f"audit log {self._entries_path} failed ({cause}) and could not be rolled back ({exc})"
            log.critical(self._broken)

    async def destroy_keys(self, tenant: str) -> int:
        self._check_writable()
        if self._keys.get(tenant):
            remaining = [k for keys in self._keys.values() for k in keys if k.tenant != tenant]
            blob = b"".join(_key_line(k) for k in remaining)
            await asyncio.to_thread(_replace_durably, self.directory / KEYS, blob)
        self._keys.pop(tenant, None)
        index = self._index.get(tenant)
        return index.with_payload if index else 0

    async def tenants_with_keys_before(self, day: int, after: str, limit: int) -> list[str]:
        holding = (t for t, keys in self._keys.items() if t > after and any(_expired(k, day) for k in keys))
        return sorted(holding)[:limit]

    async def destroy_keys_before(self, tenant: str, day: int, limit: int) -> int:
        self._check_writable()
        doomed = set(sorted(k.key_id for k in self._keys.get(tenant, ()) if _expired(k, day))[:limit])
        if not doomed:
            return 0
        remaining = [k for keys in self._keys.values() for k in keys if k.tenant != tenant or k.key_id not in doomed]
        await asyncio.to_thread(_replace_durably, self.directory / KEYS, b"".join(_key_line(k) for k in remaining))
        self._keys[tenant] = [k for k in self._keys[tenant] if k.key_id not in doomed]
        return len(doomed)

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._check_writable()
        line = (checkpoints.to_json(checkpoint) + "\n").encode()

        def append() -> None:
            path = self.directory / CHECKPOINTS
            created = not path.exists()
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fdatasync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.directory)

        await asyncio.to_thread(append)
        self._latest = checkpoint

    # -- reading ----------------------------------------------------------

    async def load_heads(self, tenants: Collection[str]) -> dict[str, Head]:
        return {t: self._index[t].head for t in tenants if t in self._index}

    async def all_heads(self) -> dict[str, Head]:
        return {t: index.head for t, index in self._index.items()}

    async def load_keys(self, tenants: Collection[str]) -> dict[str, list[WrappedKey]]:
        return {t: list(self._keys.get(t, ())) for t in tenants}

    async def latest_checkpoint(self) -> Checkpoint | None:
        return self._latest

    def _positions(self, query: QueryFilter) -> Iterator[tuple[int, int]]:
        tenants = [query.tenant] if query.tenant is not None else sorted(self._index)
        for tenant in tenants:
            index = self._index.get(tenant)
            if index is None:
                continue
            if index.ordered:
                for position in range(bisect.bisect_right(index.seqs, query.after_seq), len(index.seqs)):
                    yield index.offsets[position], index.lengths[position]
                continue
            for position, seq in enumerate(index.seqs):
                if seq > query.after_seq:
                    yield index.offsets[position], index.lengths[position]

    async def read(self, query: QueryFilter) -> list[Entry]:
        filtered = query.session_id or query.run_id or query.action or query.from_us or query.to_us
        positions = list(self._positions(query)) if filtered else list(islice(self._positions(query), query.limit))

        def read_sync() -> list[Entry]:
            found: list[Entry] = []
            for offset, length in positions:
                entry = self._decode_at(offset, length)
                if entry is not None and query.matches(entry):
                    found.append(entry)
                    if len(found) >= query.limit:
                        break
            return found

        return await asyncio.to_thread(read_sync)

    def _decode_at(self, offset: int, length: int) -> Entry | None:
        try:
            return jsonl.decode(os.pread(self._fd, length, offset))
        except ValueError:
            return None  # edited on disk since it was indexed; Verify reports it

    async def macs_at(self, positions: Collection[tuple[str, int]]) -> dict[tuple[str, int], bytes]:
        wanted: list[tuple[tuple[str, int], int, int]] = []
        for tenant, seq in positions:
            index = self._index.get(tenant)
            if index is None:
                continue
            for position in range(len(index.seqs) - 1, -1, -1):
                if index.seqs[position] == seq:
                    wanted.append(((tenant, seq), index.offsets[position], index.lengths[position]))
                    break

        def read_sync() -> dict[tuple[str, int], bytes]:
            found: dict[tuple[str, int], bytes] = {}
            for at, offset, length in wanted:
                entry = self._decode_at(offset, length)
                if entry is not None and (entry.user_id, entry.seq) == at:
                    found[at] = entry.mac
            return found

        return await asyncio.to_thread(read_sync)

    def _scan(self, size: int, unreadable: list[str] | None) -> Iterator[Entry]:
        """Every entry stored in the first ``size`` bytes, in storage order (reads the file itself,
        not the index, so verification sees exactly what is on disk)."""
        with open(self._entries_path, "rb") as stream:
            for number, (_, raw, complete) in enumerate(jsonl.lines(stream, size), start=1):
                if not complete:
                    if unreadable is not None and not self.readonly:
                        unreadable.append(f"line {number}: incomplete")
                    return  # read-only: a crash's torn, unacknowledged write, not tampering
                try:
                    yield jsonl.decode(raw)
                except ValueError as exc:
                    if unreadable is not None:
                        unreadable.append(f"line {number}: {exc}")

    async def verify(
        self, key: bytes, checkpoint: Checkpoint | None, only: str | None
    ) -> tuple[list[ChainReport], list[str]]:
        size = self._size

        def verify_sync() -> tuple[list[ChainReport], list[str]]:
            unreadable: list[str] = []
            # A tenant's verification names only its own chain: unreadable lines of unknown
            # owner show up there as the gap they leave.
            collect = unreadable if only is None else None
            reports = verify_entries(key, self._scan(size, collect), checkpoint, [only] if only else None)
            if suspects(reports):
                reports = find_foreign(key, reports, self._scan(size, None))
            return reports, unreadable

        return await asyncio.to_thread(verify_sync)
