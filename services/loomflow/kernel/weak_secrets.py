"""One rule for every shared secret the suite is configured with: long, not a placeholder, not a pattern.

Used by the token verifier (``LOOMFLOW_AUTH_JWT_SECRET``, the HS256 key that
mints operator tokens) and by every service's own shared keys (HMAC keys), so
all refuse the same weak values with one clear line naming the setting.
"""

from __future__ import annotations

import re

from loomflow.kernel.config import ConfigError

MIN_SECRET_CHARS = 32
"""At least 32 characters: 128 bits or more of entropy in `openssl rand -hex 32` text, the RFC 7518 HS256 minimum."""

MIN_DISTINCT = 8
"""Fewer distinct characters (or bytes) than this is a pattern, not a random key."""

GENERATE = "generate one with `openssl rand -hex 32`"

PLACEHOLDER = re.compile(
    r"change[-_ ]?me|please[-_ ]?change|replace[-_ ]?me|example|default|insecure|do[-_ ]?not[-_ ]?use|"
    r"placeholder|your[-_ ]?(secret|key)|dev[-_ ]?key|not[-_ ]?a[-_ ]?secret|super[-_ ]?secret|my[-_ ]?secret|"
    r"passw(or|0)d|s3cr3t|letmein|top[-_ ]?secret",
    re.IGNORECASE,
)
"""Words that mark a value copied from a template or a tutorial rather than generated."""


class WeakSecret(ConfigError):
    """The secret parses but must not be used outside insecure mode."""


def check_secret_text(value: str, setting: str, *, known: tuple[str, ...] = ()) -> None:
    """Raises :class:`WeakSecret` naming ``setting`` when ``value`` is too short, a placeholder or a pattern.

    ``known`` lists further values that are public (the suite's development keys).
    """
    if len(value) < MIN_SECRET_CHARS:
        raise WeakSecret(f"{setting} is too short ({len(value)} characters, at least {MIN_SECRET_CHARS}); {GENERATE}")
    if PLACEHOLDER.search(value) or value in known:
        raise WeakSecret(f"{setting} is a well-known placeholder or development key; {GENERATE}")
    if len(set(value)) < MIN_DISTINCT:
        raise WeakSecret(f"{setting} is not random (too few distinct characters); {GENERATE}")
