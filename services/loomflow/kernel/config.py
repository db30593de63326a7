"""One configuration scheme for flags and ``LOOMFLOW_*`` environment variables.

A settings section is a frozen dataclass whose fields are declared with
:func:`option`. The field ``dsn`` of section ``orders`` is the flag
``--orders-dsn`` and the variable ``LOOMFLOW_ORDERS_DSN``; a flag beats the
variable, the variable beats the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

ENV_PREFIX = "LOOMFLOW_"


def option(default: Any, help: str, *, secret: bool = False) -> Any:
    """Declares one setting: its default, a one-line meaning, and whether it is a secret."""
    return dataclasses.field(default=default, metadata={"help": help, "secret": secret})


@dataclasses.dataclass(frozen=True)
class OptionInfo:
    """Everything the CLI, the README table and the k8s manifest test need about one option."""

    section: str
    name: str
    flag: str
    env: str
    default: Any
    type: type
    help: str
    secret: bool


def _key(section: str, name: str) -> str:
    return f"{section}_{name}" if section else name


def options(section: str, cls: type[Any]) -> Iterator[OptionInfo]:
    """Lists the options of one settings section."""
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        key = _key(section, f.name)
        kind = {"str": str, "int": int, "float": float, "bool": bool}[str(hints[f.name])]
        yield OptionInfo(
            section=section,
            name=f.name,
            flag="--" + key.replace("_", "-"),
            env=ENV_PREFIX + key.upper(),
            default=f.default,
            type=kind,
            help=str(f.metadata.get("help", "")),
            secret=bool(f.metadata.get("secret", False)),
        )


def add_arguments(parser: argparse.ArgumentParser, section: str, cls: type[Any]) -> None:
    """Adds one section's flags to a parser; unset flags stay None so env and defaults apply."""
    group = parser.add_argument_group(section or "server")
    for opt in options(section, cls):
        shown = "***" if opt.secret and opt.default else opt.default
        # argparse %-formats help texts: a literal % in a setting's help (or default) must be doubled.
        text = f"{opt.help} [env {opt.env}, default {shown!r}]".replace("%", "%%")
        dest = _key(section, opt.name)
        if opt.type is bool:
            group.add_argument(opt.flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            group.add_argument(opt.flag, dest=dest, type=opt.type, default=None, help=text)


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the flag and variable."""


def _parse(opt: OptionInfo, raw: str) -> Any:
    if opt.type is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{opt.env}={raw!r}: expected true or false")
    try:
        return opt.type(raw)
    except ValueError as exc:
        raise ConfigError(f"{opt.env}={raw!r}: expected {opt.type.__name__}") from exc


def load(
    section: str,
    cls: type[T],
    args: argparse.Namespace | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> T:
    """Builds a settings section from keyword overrides, flags, environment and defaults."""
    environ = os.environ if env is None else env
    values: dict[str, Any] = {}
    for opt in options(section, cls):
        if opt.name in overrides:
            values[opt.name] = overrides[opt.name]
            continue
        flag_value = getattr(args, _key(section, opt.name), None) if args is not None else None
        if flag_value is not None:
            values[opt.name] = flag_value
        elif opt.env in environ:
            values[opt.name] = _parse(opt, environ[opt.env])
    unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if unknown:
        raise ConfigError(f"unknown {section or 'server'} settings: {sorted(unknown)}")
    return cls(**values)
