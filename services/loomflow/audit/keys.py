"""The audit service's three secrets, read from configuration and checked.

* HMAC key (``LOOMFLOW_AUDIT_HMAC_KEY``): links every chain. Any secret text of
  at least 32 characters; the key is its UTF-8 bytes (``openssl rand -hex 32``).
* Signing key (``LOOMFLOW_AUDIT_SIGNING_KEY``): the Ed25519 private key that
  signs checkpoints: a PEM (PKCS#8) private key, or the raw 32-byte seed as 64
  hex characters or base64.
* Payload key (``LOOMFLOW_AUDIT_PAYLOAD_KEY``): the master key that wraps the
  per-tenant data keys: 32 random bytes as 64 hex characters or base64.

An empty, too short, malformed or well-known key refuses to start the service.
Only in the server's explicit insecure mode is an empty key replaced by a fixed
development key, with a warning; development keys are public, so a log written
under them proves nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from loomflow.kernel.config import ConfigError
from loomflow.kernel.weak_secrets import MIN_DISTINCT, MIN_SECRET_CHARS, WeakSecret, check_secret_text

log = logging.getLogger("loomflow.audit")
T = TypeVar("T")

HMAC_ENV = "LOOMFLOW_AUDIT_HMAC_KEY (--audit-hmac-key)"
SIGNING_ENV = "LOOMFLOW_AUDIT_SIGNING_KEY (--audit-signing-key)"
PAYLOAD_ENV = "LOOMFLOW_AUDIT_PAYLOAD_KEY (--audit-payload-key)"

MIN_HMAC_KEY_CHARS = MIN_SECRET_CHARS
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def dev_key(name: str) -> bytes:
    """The fixed, public development key for one purpose (insecure mode only)."""
    return hashlib.sha256(b"loomflow insecure development audit key: " + name.encode()).digest()


DEV_HMAC_KEY_TEXT = dev_key("hmac").hex()
"""The insecure-mode HMAC key as configuration text (``loomflow audit verify --insecure-dev-key``)."""


@dataclass(frozen=True)
class AuditKeys:
    hmac_key: bytes
    signing_key: Ed25519PrivateKey
    payload_key: bytes
    development: tuple[str, ...] = ()
    """Which keys are the public development keys (insecure mode)."""

    @property
    def public_key(self) -> bytes:
        return self.signing_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


WeakKey = WeakSecret
"""The key parses but must not be used outside insecure mode (the kernel's rule for every secret)."""


def _decode_32_bytes(text: str) -> bytes | None:
    """32 bytes from 64 hex characters or base64 (standard or URL-safe); None if neither."""
    if _HEX64.fullmatch(text):
        return bytes.fromhex(text)
    standard = text.replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def _check_random_bytes(raw: bytes, env: str) -> None:
    if len(set(raw)) < MIN_DISTINCT:
        raise WeakKey(f"{env} is not random (too few distinct bytes); generate one with `openssl rand -hex 32`")
    if raw in (dev_key("hmac"), dev_key("signing"), dev_key("payload")):
        raise WeakKey(f"{env} is a public development key; generate one with `openssl rand -hex 32`")


def parse_hmac_key(text: str, strict: bool = True) -> bytes:
    """The HMAC key's bytes; ``strict`` (outside insecure mode) also refuses weak keys."""
    value = text.strip()
    if not value:
        raise ConfigError(f"{HMAC_ENV} is empty; set it to a secret of at least {MIN_HMAC_KEY_CHARS} characters")
    if not strict:
        return value.encode()
    check_secret_text(value, HMAC_ENV, known=(DEV_HMAC_KEY_TEXT,))
    return value.encode()


def parse_payload_key(text: str, strict: bool = True) -> bytes:
    value = text.strip()
    if not value:
        raise ConfigError(f"{PAYLOAD_ENV} is empty; set it to 32 random bytes (`openssl rand -hex 32`)")
    raw = _decode_32_bytes(value)
    if raw is None:
        raise ConfigError(
            f"{PAYLOAD_ENV} must be 32 random bytes written as 64 hex characters or base64 (`openssl rand -hex 32`)"
        )
    if strict:
        _check_random_bytes(raw, PAYLOAD_ENV)
    return raw


def parse_signing_key(text: str, strict: bool = True) -> Ed25519PrivateKey:
    value = text.strip()
    if not value:
        raise ConfigError(f"{SIGNING_ENV} is empty; set it to an Ed25519 private key (PEM, or a 32-byte seed)")
    if value.startswith("-----BEGIN"):
        try:
            loaded = serialization.load_pem_private_key(value.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{SIGNING_ENV}: not a readable unencrypted PEM private key ({exc})") from None
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ConfigError(f"{SIGNING_ENV}: the PEM key is not an Ed25519 key")
        seed = loaded.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
    else:
        decoded = _decode_32_bytes(value)
        if decoded is None:
            raise ConfigError(
                f"{SIGNING_ENV} must be an Ed25519 private key: PEM (PKCS#8), or the 32-byte seed as 64 hex "
                "characters or base64 (`openssl genpkey -algorithm ed25519` or `openssl rand -hex 32`)"
            )
        seed = decoded
    if strict:
        _check_random_bytes(seed, SIGNING_ENV)
    return Ed25519PrivateKey.from_private_bytes(seed)


def parse_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key: PEM, or 32 raw bytes as hex or base64 (what GetCheckpoint returns)."""
    value = text.strip()
    if value.startswith("-----BEGIN"):
        try:
            loaded = serialization.load_pem_public_key(value.encode())
        except ValueError as exc:
            raise ConfigError(f"not a readable PEM public key ({exc})") from None
        if not isinstance(loaded, Ed25519PublicKey):
            raise ConfigError("the public key is not an Ed25519 key")
        return loaded
    raw = _decode_32_bytes(value)
    if raw is None:
        raise ConfigError("the public key must be PEM, or 32 bytes as 64 hex characters or base64")
    return Ed25519PublicKey.from_public_bytes(raw)


def _resolve(
    name: str, text: str, parse: Callable[[str, bool], T], development: T, insecure: bool, used_dev: list[str]
) -> T:
    if not insecure:
        return parse(text, True)
    if not text.strip():
        used_dev.append(name)
        return development
    try:
        return parse(text, True)
    except WeakKey as exc:
        log.warning("INSECURE MODE: accepting a weak audit key: %s", exc)
        return parse(text, False)


def load_keys(hmac_key: str, signing_key: str, payload_key: str, *, insecure: bool) -> AuditKeys:
    """Parses and checks the three keys; raises :class:`ConfigError` naming the variable.

    In insecure mode an empty key becomes the public development key and a key that
    parses but is weak is accepted; both log a warning. A malformed key always fails.
    """
    used_dev: list[str] = []
    hmac_raw = _resolve("hmac", hmac_key, parse_hmac_key, DEV_HMAC_KEY_TEXT.encode(), insecure, used_dev)
    signing = _resolve(
        "signing",
        signing_key,
        parse_signing_key,
        Ed25519PrivateKey.from_private_bytes(dev_key("signing")),
        insecure,
        used_dev,
    )
    payload = _resolve("payload", payload_key, parse_payload_key, dev_key("payload"), insecure, used_dev)
    if used_dev:
        log.warning(
            "INSECURE MODE: audit %s key(s) not configured; using public development keys. "
            "Entries written now prove nothing; never run this in production.",
            ", ".join(used_dev),
        )
    return AuditKeys(hmac_raw, signing, payload, tuple(used_dev))
