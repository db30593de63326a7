"""One DSN parser: which backend a DSN names, its file path or options, and a form safe to show.

A DSN's password (``user:secret@host``) and secret options (``password=``, ``sslpassword=``) never reach a
log line, an error message or a ``repr``: everything shown goes through :func:`redact`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from loomflow.kernel.config import ConfigError

POSTGRES = frozenset({"postgres", "postgresql"})
REDIS = frozenset({"redis", "rediss"})
SQLITE = frozenset({"sqlite"})
FILE_SCHEMES = frozenset({"sqlite", "chroma"})

SECRET_OPTIONS = frozenset({"password", "sslpassword", "passfile", "token", "secret"})
HIDDEN = "***"

# scheme://user:password@host — the password up to the last '@' before the path (passwords may hold '@').
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)(?P<secret>[^\s/?#]*)(?=@)", re.IGNORECASE)
_SECRET_OPTION = re.compile(
    r"(?P<head>[?&](?:" + "|".join(sorted(SECRET_OPTIONS)) + r")=)(?P<secret>[^&\s#]*)", re.IGNORECASE
)


def redact(text: str) -> str:
    """``text`` with every DSN password and secret option replaced by ``***`` (for messages and logs)."""
    text = _URL_PASSWORD.sub(lambda m: m["head"] + HIDDEN, text)
    return _SECRET_OPTION.sub(lambda m: m["head"] + HIDDEN, text)


def scheme_of(dsn: str) -> str:
    """The lower-case scheme (``postgresql://…`` → ``postgresql``); ``""`` for an empty DSN or a bare path."""
    return urlsplit(dsn).scheme.lower() if "://" in dsn else ""


@dataclass(frozen=True)
class Dsn:
    """A parsed DSN. ``str()`` and ``repr()`` show the redacted form; :attr:`secret_url` is for the driver."""

    secret_url: str = field(repr=False)
    setting: str = field(default="", repr=False)

    @property
    def scheme(self) -> str:
        return scheme_of(self.secret_url)

    @property
    def is_postgres(self) -> bool:
        return self.scheme in POSTGRES

    @property
    def is_redis(self) -> bool:
        return self.scheme in REDIS

    @property
    def redacted(self) -> str:
        return redact(self.secret_url)

    @property
    def options(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.secret_url).query, keep_blank_values=True))

    def file_path(self, example: str) -> str:
        """``sqlite:///abs/file.db`` → ``/abs/file.db`` (``sqlite://rel.db`` → ``rel.db``); a ConfigError when empty."""
        path = self.secret_url[len(self.scheme) + 3 :]
        if not path or path == ":memory:":
            raise ConfigError(f"{self.setting}: {self.scheme}:// needs a file path, e.g. {example}")
        return path

    def without_option(self, name: str, default: str) -> tuple[Dsn, str]:
        """(this DSN without option ``name``, its value or ``default``): for options the driver must not see."""
        parts = urlsplit(self.secret_url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        value = next((v for k, v in query if k == name), default)
        rest = urlencode([(k, v) for k, v in query if k != name])
        return Dsn(urlunsplit(parts._replace(query=rest)), self.setting), value

    def with_search_path(self, schema: str) -> Dsn:
        """This Postgres DSN with its tables in ``schema`` (``?search_path=``; asyncpg sends it as a setting)."""
        parts = urlsplit(self.secret_url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "search_path"]
        query.append(("search_path", schema))
        return Dsn(urlunsplit(parts._replace(query=urlencode(query))), self.setting)

    def unknown_scheme(self, accepted: str) -> ConfigError:
        return ConfigError(f"{self.setting}={self.redacted!r}: unknown scheme; use one of {accepted}")

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"Dsn({self.redacted!r})"


def parse(dsn: str, setting: str = "") -> Dsn:
    """``dsn`` parsed; ``setting`` (e.g. ``LOOMFLOW_<SERVICE>_DSN``) is named in its errors."""
    return Dsn(dsn, setting)
