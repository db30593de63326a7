"""The one answer to "is the backend down?": which driver errors mean *retry later* (``Unavailable``).

Down means: the connection was refused, lost or timed out; the server is shutting down, starting up or
full; or it takes no writes because a failover left us on a read-only standby (Postgres
``ReadOnlySQLTransactionError``, Redis ``READONLY``). Every store wraps its calls in
:func:`unavailable_on_outage`, so a client sees UNAVAILABLE naming the backend and why, never INTERNAL,
and the DSN's password never appears in the message.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from functools import cache

from loomflow.kernel.backends.dsn import redact
from loomflow.kernel.errors import ServiceError, Unavailable

READ_ONLY = "it takes no writes (a read-only standby, e.g. after a failover); retry when the primary is back"

# SQLite: only what a retry can cure (another process holds the lock) or the file system refuses.
_SQLITE_OUTAGE = ("locked", "busy", "disk", "unable to open", "readonly database")


@cache
def _read_only_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    with contextlib.suppress(ImportError):
        import asyncpg

        found.append(asyncpg.ReadOnlySQLTransactionError)
    with contextlib.suppress(ImportError):
        from redis.exceptions import ReadOnlyError

        found.append(ReadOnlyError)
    return tuple(found)


@cache
def _outage_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [OSError, TimeoutError]  # refused, reset, DNS; connect and command timeouts
    with contextlib.suppress(ImportError):
        import asyncpg

        found += [
            asyncpg.PostgresConnectionError,  # class 08: connection failures
            asyncpg.InterfaceError,  # the connection was closed under us
            # A pooled session the server ended while idle can fail its next query with "cannot switch to
            # state …; another operation is in progress" (asyncpg issues #784, #1069): a dropped connection.
            asyncpg.exceptions._base.InternalClientError,
            asyncpg.exceptions.OperatorInterventionError,  # class 57: admin shutdown, cannot connect now
            asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk full
        ]
    with contextlib.suppress(ImportError):
        from redis import exceptions as redis_errors

        found += [redis_errors.ConnectionError, redis_errors.TimeoutError]  # BusyLoadingError is a ConnectionError
    return tuple(found)


def outage_reason(exc: BaseException) -> str | None:
    """Why ``exc`` means the backend is down, or None when it is some other error (a bug, bad data)."""
    if isinstance(exc, _read_only_errors()):
        return READ_ONLY
    if isinstance(exc, sqlite3.OperationalError):
        return "the database file is busy or cannot be used" if any(w in str(exc) for w in _SQLITE_OUTAGE) else None
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, _outage_errors()):
        return "cannot reach it"
    return None


def is_outage(exc: BaseException) -> bool:
    return outage_reason(exc) is not None


def unavailable(what: str, exc: BaseException) -> Unavailable:
    """The ``Unavailable`` to raise for an outage of ``what`` (e.g. ``"<service> database (Postgres)"``)."""
    reason = outage_reason(exc) or "failed"
    detail = redact(str(exc)) or type(exc).__name__
    return Unavailable(f"{what} unavailable: {reason}: {type(exc).__name__}: {detail}")


@contextlib.contextmanager
def unavailable_on_outage(what: str) -> Iterator[None]:
    """Turns an outage of the backend ``what`` into ``Unavailable``; every other error passes unchanged."""
    try:
        yield
    except ServiceError:
        raise
    except Exception as exc:
        if not is_outage(exc):
            raise
        raise unavailable(what, exc) from exc
