"""Optional dependencies: which extra of the ``loomflow`` distribution brings which backend.

The embedded defaults (SQLite, in-process stores, files, the echo model) need no
extra. A DSN or model that names a backend whose library is not installed fails before anything
imports it, with one message naming the setting and the extra to install, instead of a
``ModuleNotFoundError`` from deep inside a backend module.
"""

from __future__ import annotations

import importlib.util

from loomflow.kernel.config import ConfigError

EXTRAS: dict[str, tuple[str, ...]] = {
    "postgres": ("asyncpg",),
    "redis": ("redis",),
    "chroma": ("chromadb",),
    "anthropic": ("anthropic",),
    "openai": ("openai",),
}
"""Extra name → the top-level modules it installs (kept in step with pyproject.toml by a test)."""


class MissingExtra(ConfigError):
    """A configured backend needs an optional dependency that is not installed."""

    def __init__(self, extra: str, needed_for: str) -> None:
        super().__init__(
            f"{needed_for} needs the optional dependency {', '.join(EXTRAS[extra])}, which is not installed: "
            f"pip install 'loomflow[{extra}]'"
        )
        self.extra = extra


def require(extra: str, needed_for: str) -> None:
    """Raise :class:`MissingExtra` unless every module of ``extra`` can be imported.

    ``needed_for`` names what asked for it, e.g. ``"LOOMFLOW_<SERVICE>_DSN=postgres://…"``.
    """
    if any(importlib.util.find_spec(module) is None for module in EXTRAS[extra]):
        raise MissingExtra(extra, needed_for)
