"""Capturing the kernel's JSON log lines in-process, formatted as they are emitted."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

from loomflow.kernel.telemetry import JsonFormatter


class CapturedLogs:
    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    @property
    def text(self) -> str:
        return self._stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line]

    def rpc_lines(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("logger") == "loomflow.rpc" and line.get("msg") == "rpc"]


@contextlib.contextmanager
def captured_logs(logger_name: str = "loomflow") -> Iterator[CapturedLogs]:
    """Every record of ``logger_name`` (info and up) as the JSON line production writes.

    The formatter runs at emit time, inside the RPC, because the line's context
    (user_id, rpc, trace_id …) lives in a context variable of that RPC.
    """
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield CapturedLogs(stream)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
