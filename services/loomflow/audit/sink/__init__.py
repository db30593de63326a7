"""Audit sinks, chosen by DSN: ``file:///path`` (the default, under the data dir) or ``postgres://…``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from loomflow.audit.sink.base import BadEntry, Conflict, Sink, SinkBroken
from loomflow.kernel import extras
from loomflow.kernel.backends import dsn as dsns
from loomflow.kernel.config import ConfigError

__all__ = ["BadEntry", "Conflict", "Sink", "SinkBroken", "default_dsn", "open_sink"]


def default_dsn(data_dir: str) -> str:
    return f"file://{Path(data_dir).resolve() / 'audit'}"


def file_folder(location: str) -> Path:
    """A log folder from a path or ``file://`` DSN; a path to ``entries.jsonl`` means its folder."""
    path = Path(unquote(urlparse(location).path) if location.startswith("file:") else location)
    return path.parent if path.suffix == ".jsonl" else path


def open_sink(dsn: str, *, readonly: bool = False, migrate: bool = True) -> Sink:
    """The sink a DSN names (not opened yet). Plain paths are accepted too (the offline verifier)."""
    parsed = dsns.parse(dsn, "LOOMFLOW_AUDIT_DSN")
    scheme = parsed.scheme
    if parsed.is_postgres:
        extras.require("postgres", f"LOOMFLOW_AUDIT_DSN={scheme}://…")
        from loomflow.audit.sink.postgres import PostgresSink

        return PostgresSink(dsn, readonly=readonly, migrate=migrate)
    if scheme == "file" or (not scheme and dsn):
        from loomflow.audit.sink.file import FileSink

        if scheme == "file" and not urlparse(dsn).path:
            raise ConfigError(
                f"LOOMFLOW_AUDIT_DSN={parsed.redacted!r}: a file DSN needs a path, e.g. file:///var/lib/audit"
            )
        return FileSink(file_folder(dsn), readonly=readonly)
    raise ConfigError(
        f"LOOMFLOW_AUDIT_DSN={parsed.redacted!r}: unsupported; use file:///path (JSONL, the default) or postgres://… "
        "(an audit log must be durable, so memory:// and sqlite:// are not offered)"
    )
