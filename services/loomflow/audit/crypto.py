"""Payload encryption with per-tenant data keys (crypto-shredding).

Every tenant's payloads are encrypted with AES-256-GCM under that tenant's own
random data key. Data keys are stored only wrapped (AES-256-GCM) under the
master payload key, so a sink never holds a usable key. ``Forget`` destroys a
tenant's wrapped keys: the ciphertext stays in the chain (which is why the
chain still verifies) but nobody can read it any more.

Retention by age: new payloads are encrypted under the tenant's key of their
UTC day (a *period key*); the retention sweeper destroys the period keys whose
whole day is older than the tenant's limit, which shreds exactly those payloads.

Ciphertext layouts (the tenant is authenticated data, so a payload cannot be
moved to another tenant and decrypt; an empty plaintext stays empty, no key):

* ``0x01 ‖ key_id (8, random) ‖ nonce (12) ‖ AES-GCM``: written before period
  keys existed; still read, never written;
* ``0x02 ‖ period key id (5) ‖ nonce (12) ‖ AES-GCM``: a period key id is
  ``b"d" ‖ UTC day number (4, big-endian)``. Its length (5, not 8) tells it
  apart from every random id, so an old key is never taken for a period.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from loomflow.audit.models import WrappedKey

FORMAT = 1
KEY_ID_SIZE = 8
PERIOD_FORMAT = 2
PERIOD_KEY_ID_SIZE = 5
_PERIOD_TAG = b"d"
DAY_US = 86_400_000_000
NONCE_SIZE = 12
_ID_SIZES = {FORMAT: KEY_ID_SIZE, PERIOD_FORMAT: PERIOD_KEY_ID_SIZE}
_PAYLOAD_AAD = b"loomflow.audit.payload.v1\x00"
_WRAP_AAD = b"loomflow.audit.data-key.v1\x00"
CIPHERS_CACHED = 256
"""Data keys kept ready as AES-GCM ciphers, least recently used dropped first. A cipher holds ~1.9 KB
of OpenSSL state against its key's 32 bytes (cryptography 50): one per tenant was half the audit
process's memory per tenant (bench/race, 4,000 tenants); making one again costs ~3 µs."""


class MasterKeyMismatch(Exception):
    """A stored data key does not unwrap under the configured master key."""


def period_key_id(day: int) -> bytes:
    """The key id of a tenant's key for one UTC day (days since the Unix epoch)."""
    return _PERIOD_TAG + day.to_bytes(PERIOD_KEY_ID_SIZE - 1, "big")


def day_of(ts_us: int) -> int:
    return ts_us // DAY_US


def period_of(key_id: bytes) -> int | None:
    """The UTC day a period key id stands for; None for a random (pre-period) key id."""
    if len(key_id) != PERIOD_KEY_ID_SIZE or key_id[:1] != _PERIOD_TAG:
        return None
    return int.from_bytes(key_id[1:], "big")


def key_id_of(ciphertext: bytes) -> bytes | None:
    """The id of the key a ciphertext was encrypted under; None when it has no known layout."""
    size = _ID_SIZES.get(ciphertext[0]) if ciphertext else None
    if size is None or len(ciphertext) < 1 + size + NONCE_SIZE:
        return None
    return ciphertext[1 : 1 + size]


def _wrap_aad(tenant: str, key_id: bytes) -> bytes:
    return _WRAP_AAD + tenant.encode() + b"\x00" + key_id


@dataclass(frozen=True, slots=True)
class _DataKey:
    key_id: bytes
    raw: bytes


class Keyring:
    """The master key plus a cache of unwrapped tenant data keys.

    The cache holds every tenant whose keys were loaded (``known``), including
    tenants without any key yet, so a sink is asked about a tenant once.
    """

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("the master payload key must be 32 bytes")
        self._master = AESGCM(master_key)
        self._keys: dict[str, list[_DataKey]] = {}
        self._ciphers: OrderedDict[bytes, AESGCM] = OrderedDict()
        """Raw data key -> its cipher, bounded by :data:`CIPHERS_CACHED`."""

    def known(self, tenant: str) -> bool:
        return tenant in self._keys

    def install(self, tenant: str, wrapped: list[WrappedKey]) -> None:
        """Caches a tenant's stored keys (oldest first); raises :class:`MasterKeyMismatch`."""
        keys: list[_DataKey] = []
        for item in wrapped:
            nonce, body = item.wrapped[:NONCE_SIZE], item.wrapped[NONCE_SIZE:]
            try:
                raw = self._master.decrypt(nonce, body, _wrap_aad(tenant, item.key_id))
            except InvalidTag:
                raise MasterKeyMismatch(
                    "a stored data key does not unwrap under LOOMFLOW_AUDIT_PAYLOAD_KEY: "
                    "the master key differs from the one the log was written with"
                ) from None
            keys.append(_DataKey(item.key_id, raw))
        self._drop_ciphers(tenant)
        self._keys[tenant] = keys

    def needs_key(self, tenant: str, day: int) -> bool:
        """Whether encrypting for this (known) tenant on this UTC day first needs a new data key."""
        return self._find(tenant, period_key_id(day)) is None

    def create(self, tenant: str, day: int) -> WrappedKey:
        """A fresh data key for the tenant's UTC day, cached; returns it wrapped, for the sink to persist.
        Two processes may create the same day's key at once: the sink keeps one (the other's batch
        fails with a conflict and is retried under the stored key)."""
        raw = AESGCM.generate_key(bit_length=256)
        key_id = period_key_id(day)
        nonce = os.urandom(NONCE_SIZE)
        wrapped = nonce + self._master.encrypt(nonce, raw, _wrap_aad(tenant, key_id))
        self._keys.setdefault(tenant, []).append(_DataKey(key_id, raw))
        return WrappedKey(tenant, key_id, wrapped)

    def _find(self, tenant: str, key_id: bytes) -> _DataKey | None:
        return next((key for key in self._keys.get(tenant, ()) if key.key_id == key_id), None)

    def _cipher(self, key: _DataKey) -> AESGCM:
        ciphers = self._ciphers
        cipher = ciphers.get(key.raw)
        if cipher is not None:
            ciphers.move_to_end(key.raw)
            return cipher
        cipher = ciphers[key.raw] = AESGCM(key.raw)
        if len(ciphers) > CIPHERS_CACHED:
            ciphers.popitem(last=False)
        return cipher

    def _drop_ciphers(self, tenant: str) -> None:
        """Leaves no ready cipher of the tenant's keys behind (a Forget shreds them in memory too)."""
        for key in self._keys.get(tenant, ()):
            self._ciphers.pop(key.raw, None)

    def encrypt(self, tenant: str, plaintext: bytes, day: int) -> bytes:
        """Encrypts under the tenant's key of the UTC day (which must exist: see :meth:`needs_key`)."""
        if not plaintext:
            return b""
        key = self._find(tenant, period_key_id(day))
        assert key is not None, "create the day's key first"
        nonce = os.urandom(NONCE_SIZE)
        header = bytes((PERIOD_FORMAT,)) + key.key_id + nonce
        return header + self._cipher(key).encrypt(nonce, plaintext, _PAYLOAD_AAD + tenant.encode())

    def decrypt(self, tenant: str, ciphertext: bytes) -> bytes | None:
        """The plaintext, or None when the key that encrypted it no longer exists (shredded)."""
        if not ciphertext:
            return b""
        key_id = key_id_of(ciphertext)
        key = None if key_id is None else self._find(tenant, key_id)
        if key_id is None or key is None:
            return None
        start = 1 + len(key_id)
        nonce = ciphertext[start : start + NONCE_SIZE]
        try:
            return self._cipher(key).decrypt(nonce, ciphertext[start + NONCE_SIZE :], _PAYLOAD_AAD + tenant.encode())
        except InvalidTag:
            return None

    def lacks_key(self, tenant: str, ciphertext: bytes) -> bool:
        """Whether the key this ciphertext names is missing from the cache (it may exist in the
        sink: created by another process, or after a Forget this process saw)."""
        key_id = key_id_of(ciphertext)
        return key_id is not None and self._find(tenant, key_id) is None

    def forget(self, tenant: str) -> None:
        """Drops the tenant's keys from memory (the sink destroys the stored copies)."""
        self._drop_ciphers(tenant)
        self._keys[tenant] = []

    def evict(self, tenant: str) -> None:
        """Forgets what is cached about the tenant, so its keys are loaded again from the sink."""
        self._drop_ciphers(tenant)
        self._keys.pop(tenant, None)
