"""Decision and approval ids: unguessable (128 random bits) and unique, URL-safe."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """``prefix`` plus 22 URL-safe characters from the OS's CSPRNG (``dec_…``, ``apr_…``)."""
    return prefix + secrets.token_urlsafe(16)
