"""What only the file sink must get right: a crash's torn last write, and one writer per log."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from loomflow.audit.keys import AuditKeys
from loomflow.audit.models import Draft, QueryFilter
from loomflow.audit.sink import jsonl
from loomflow.audit.sink.file import ENTRIES, KEYS
from loomflow.kernel.config import ConfigError
from tests.audit.conftest import make_log


async def _write(folder: Path, keys: AuditKeys, count: int) -> None:
    log = make_log(f"file://{folder}", keys)
    await log.start()
    for n in range(count):
        await log.append(Draft("alice", actor="agent", action="tool_call", payload=b"p%d" % n))
    await log.stop()


@pytest.mark.parametrize(
    "torn",
    [
        b'{"seq":4,"ts":17324567891234,"user_id":"alice","session_id":"","run',  # cut mid-line
        b"\x00" * 300,  # a block the file system extended but never wrote
        b'{"seq":4}',  # a complete-looking object without its newline
    ],
    ids=["half-line", "zero-filled-block", "missing-newline"],
)
async def test_a_torn_last_write_is_set_aside_and_acknowledged_entries_verify(
    tmp_path: Path, keys: AuditKeys, torn: bytes
) -> None:
    folder = tmp_path / "audit"
    await _write(folder, keys, 3)
    with (folder / ENTRIES).open("ab") as log_file:
        log_file.write(torn)

    log = make_log(f"file://{folder}", keys)
    await log.start()
    try:
        before = await log.verify(None)
        after_append = await log.append(Draft("alice", actor="agent", action="tool_call", payload=b"p3"))
        after = await log.verify(None)
        payloads = [i.payload for i in await log.query(QueryFilter("alice"))]
    finally:
        await log.stop()

    assert before.ok, (before.unreadable, [c.reason for c in before.chains])
    assert after_append.seq == 4, "the chain must continue from the last acknowledged entry"
    assert after.ok
    assert payloads == [b"p0", b"p1", b"p2", b"p3"]
    aside = list(folder.glob(f"{ENTRIES}.torn-*"))
    assert len(aside) == 1, "the torn bytes should be kept aside for forensics"
    assert aside[0].read_bytes() == torn


async def test_a_torn_key_record_is_cut_too(tmp_path: Path, keys: AuditKeys) -> None:
    folder = tmp_path / "audit"
    await _write(folder, keys, 2)
    with (folder / KEYS).open("ab") as keys_file:
        keys_file.write(b'{"user_id":"bob","key_id":"00')
    log = make_log(f"file://{folder}", keys)
    await log.start()
    try:
        assert [i.payload for i in await log.query(QueryFilter("alice"))] == [b"p0", b"p1"]
        await log.append(Draft("bob", actor="agent", action="x", payload=b"bob"))
        assert [i.payload for i in await log.query(QueryFilter("bob"))] == [b"bob"]
    finally:
        await log.stop()


async def test_a_corrupted_middle_line_is_reported_not_repaired(tmp_path: Path, keys: AuditKeys) -> None:
    folder = tmp_path / "audit"
    await _write(folder, keys, 3)
    lines = (folder / ENTRIES).read_bytes().splitlines(keepends=True)
    lines[1] = b"garbage that is not an entry\n"
    (folder / ENTRIES).write_bytes(b"".join(lines))
    log = make_log(f"file://{folder}", keys)
    await log.start()
    try:
        report = await log.verify(None)
    finally:
        await log.stop()
    assert not report.ok
    assert report.unreadable == ["line 2: not JSON"]
    assert (report.chains[0].first_bad_seq, report.chains[0].reason.split(":")[0]) == (2, "seq gap")
    assert b"garbage" in (folder / ENTRIES).read_bytes(), "evidence of tampering must not be erased"


async def test_a_second_process_cannot_open_the_same_log(tmp_path: Path, keys: AuditKeys) -> None:
    first = make_log(f"file://{tmp_path / 'audit'}", keys)
    await first.start()
    try:
        with pytest.raises(ConfigError, match="in use by another process"):
            await make_log(f"file://{tmp_path / 'audit'}", keys).start()
    finally:
        await first.stop()
    second = make_log(f"file://{tmp_path / 'audit'}", keys)
    await second.start()  # released on stop
    await second.stop()


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_lines_are_split_right_across_read_chunks(chunk: int) -> None:
    data = b'{"a":1}\n\n{"bb":22}\n{"torn'
    found = list(jsonl.lines(io.BytesIO(data), chunk=chunk))
    assert found == [(0, b'{"a":1}', True), (8, b"", True), (9, b'{"bb":22}', True), (19, b'{"torn', False)]
    limited = list(jsonl.lines(io.BytesIO(data), limit=12, chunk=chunk))
    assert limited == [(0, b'{"a":1}', True), (8, b"", True), (9, b'{"b', False)]
