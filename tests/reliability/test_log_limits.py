"""What one cause can write to the log: a bounded line, and repeated errors throttled with a summary.

A 400-level request once wrote a ~150 KB RecursionError traceback per call, unthrottled. The
server's logging (``configure_logging``, as ``loomflow serve`` sets it up) cuts any line to
``--log-max-line-chars`` (JSON stays valid; the traceback's head and tail survive around a
marker) and writes an error with the same logger and template at most
``--log-repeats-per-minute`` times a minute, then says how many it suppressed.
"""

from __future__ import annotations

import io
import json
import logging
import time
import traceback
from collections.abc import Iterator

import pytest

from loomflow.kernel import loglimits
from loomflow.kernel.telemetry import configure_logging

MAX_LINE = 4096
REPEATS = 5


@pytest.fixture
def server_logging() -> Iterator[io.StringIO]:
    """The root logger as ``loomflow serve`` configures it, writing to a buffer instead of stderr."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("warning", "json", max_line_chars=MAX_LINE, repeats_per_minute=REPEATS)
    written = io.StringIO()
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(written)
    try:
        yield written
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def _ping(n: int) -> int:
    return _pong(n + 1) + 1


def _pong(n: int) -> int:  # alternating frames: Python cannot fold them into "[Previous line repeated]"
    return _ping(n + 1) + 1


def _lines(written: io.StringIO) -> list[str]:
    """The lines written since the last call."""
    text = written.getvalue()
    written.seek(0)
    written.truncate()
    return [line for line in text.splitlines() if line]


def test_a_recursion_error_traceback_is_logged_as_one_bounded_valid_json_line(
    server_logging: io.StringIO,
) -> None:
    try:
        _ping(0)
    except RecursionError:
        unbounded = len(traceback.format_exc())
        logging.getLogger("loomflow.rpc").exception("unhandled error in %s", "Svc/Rpc")
    assert unbounded > 100_000, "the traceback should be as long as the one the review saw"
    (line,) = _lines(server_logging)
    assert MAX_LINE // 2 < len(line) <= MAX_LINE, f"a {len(line)}-character log line"
    entry = json.loads(line)
    assert "chars cut]" in entry["exc"], "the cut must be marked"
    assert entry["exc"].startswith("Traceback"), "the head of the traceback survives"
    assert entry["exc"].rstrip().endswith("maximum recursion depth exceeded"), "and so does its tail"


def test_a_long_text_line_is_cut_with_a_marker() -> None:
    formatter = loglimits.BoundedFormatter(logging.Formatter("%(message)s"), 200)
    line = formatter.format(logging.makeLogRecord({"msg": "x" * 10_000}))
    assert len(line) <= 200
    assert "chars cut]" in line


def test_repeated_errors_are_throttled_then_summarized(
    server_logging: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = logging.getLogger("loomflow.agent")
    for n in range(50):
        log.error("tool %s failed: %s", "calc", n)
    log.error("a different problem")
    lines = _lines(server_logging)
    assert len(lines) == REPEATS + 1, f"{len(lines)} lines for 50 repeats of one error and one other"

    later = time.monotonic() + 61
    monkeypatch.setattr(time, "monotonic", lambda: later)  # the throttle's next minute
    log.error("tool %s failed: %s", "calc", "again")
    (summary,) = _lines(server_logging)
    assert f"suppressed {50 - REPEATS} similar" in json.loads(summary)["msg"]


def test_info_and_warning_lines_are_not_throttled(server_logging: io.StringIO) -> None:
    logging.getLogger().setLevel(logging.INFO)
    for _ in range(3 * REPEATS):
        logging.getLogger("loomflow.rpc").info("rpc")
        logging.getLogger("loomflow.security").warning("auth_refused")  # has its own per-principal throttle
    assert len(_lines(server_logging)) == 6 * REPEATS
