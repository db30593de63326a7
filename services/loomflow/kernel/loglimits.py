"""Limits on what one cause can write to the log: a bounded line, and throttled repeats.

A request nested 400 levels deep once produced a 150 KB traceback per call; a
tenant repeating it could fill the disk and drown every other line. So:

* :class:`BoundedFormatter` caps every line at ``max_chars``, keeping the head and
  tail of the longest fields (a traceback's last frames say the most) and marking
  the cut; a JSON line stays valid JSON.
* :class:`RepeatThrottle` lets at most ``limit`` error records with the same
  logger, level and message template through per ``interval_s``; the first one
  let through after that carries how many were suppressed. Warnings are left
  alone: the ones that repeat by design (``auth_refused``) have their own
  per-principal throttle (kernel/security.py), and a global one would hide
  one attacker behind another.
"""

from __future__ import annotations

import json
import logging
import threading
import time

MARKER = "…[{} chars cut]…"


def cut(text: str, max_chars: int) -> str:
    """``text`` within ``max_chars``: its head and tail around a marker saying how much was cut."""
    if len(text) <= max_chars:
        return text
    keep = max(0, max_chars - len(MARKER) - 12)
    head = keep // 2
    tail = keep - head
    return text[:head] + MARKER.format(len(text) - keep) + (text[-tail:] if tail else "")


class BoundedFormatter(logging.Formatter):
    """Wraps a formatter so no line is longer than ``max_chars`` (JSON lines stay parseable)."""

    def __init__(self, inner: logging.Formatter, max_chars: int) -> None:
        super().__init__()
        self.inner = inner
        self.max_chars = max_chars

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        if len(line) <= self.max_chars:
            return line
        try:
            entry = json.loads(line)
        except ValueError:
            return cut(line, self.max_chars)
        if not isinstance(entry, dict):
            return cut(line, self.max_chars)
        # Shrink the longest string fields until the line fits (a few rounds at most).
        for _ in range(8):
            texts = [k for k, v in entry.items() if isinstance(v, str)]
            longest = max(texts, key=lambda k: len(entry[k]), default=None)
            if longest is None:
                break
            value: str = entry[longest]
            encoded = len(json.dumps(value))  # escapes (newlines, quotes) make the line longer than the text
            room = max(64, self.max_chars - (len(line) - encoded))
            entry[longest] = cut(value, max(16, int(room * len(value) / encoded) - 16))
            line = json.dumps(entry, default=str)
            if len(line) <= self.max_chars:
                return line
        return cut(line, self.max_chars)


class RepeatThrottle(logging.Filter):
    """At most ``limit`` records per (logger, level, template) per ``interval_s`` at ERROR and above."""

    def __init__(self, limit: int, interval_s: float = 60.0, max_keys: int = 10_000) -> None:
        super().__init__()
        self.limit = limit
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._windows: dict[tuple[str, int, str], list[float]] = {}  # key → [window start, passed, suppressed]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.limit <= 0 or record.levelno < logging.ERROR:
            return True
        key = (record.name, record.levelno, str(record.msg)[:200])
        now = time.monotonic()
        with self._lock:
            window = self._windows.get(key)
            if window is None or now - window[0] >= self.interval_s:
                suppressed = int(window[2]) if window is not None else 0
                if window is None and len(self._windows) >= self.max_keys:
                    self._windows.clear()  # many distinct templates: start over rather than grow
                self._windows[key] = [now, 1, 0]
                if suppressed:
                    record.msg = f"{record.msg} [suppressed {suppressed} similar in the last {self.interval_s:g} s]"
                    record.suppressed = suppressed
                return True
            if window[1] < self.limit:
                window[1] += 1
                return True
            window[2] += 1
            return False
