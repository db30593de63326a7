"""Payload encryption with per-tenant data keys (crypto-shredding).

Every tenant's payloads are encrypted with AES-256-GCM under that tenant's own
random data key. Data keys are stored only wrapped (AES-256-GCM) under the
master payload key, so a sink never holds a usable key. ``Forget`` destroys a
tenant's wrapped keys: the ciphertext stays in the chain (which is why the
chain still verifies) but nobody can read it any more.

Ciphertext layout: ``0x01 ‖ key_id (8) ‖ nonce (12) ‖ AES-GCM(ciphertext ‖ tag)``;
the tenant is authenticated data, so a payload cannot be moved to another
tenant and decrypt. An empty plaintext stays empty (no key needed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from loomflow.audit.models import WrappedKey

FORMAT = 1
KEY_ID_SIZE = 8
NONCE_SIZE = 12
_HEADER = 1 + KEY_ID_SIZE + NONCE_SIZE
_PAYLOAD_AAD = b"loomflow.audit.payload.v1\x00"
_WRAP_AAD = b"loomflow.audit.data-key.v1\x00"


class MasterKeyMismatch(Exception):
    """A stored data key does not unwrap under the configured master key."""


def _wrap_aad(tenant: str, key_id: bytes) -> bytes:
    return _WRAP_AAD + tenant.encode() + b"\x00" + key_id


@dataclass(frozen=True, slots=True)
class _DataKey:
    key_id: bytes
    cipher: AESGCM


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
            keys.append(_DataKey(item.key_id, AESGCM(raw)))
        self._keys[tenant] = keys

    def needs_key(self, tenant: str) -> bool:
        """Whether encrypting for this (known) tenant first needs a new data key."""
        return not self._keys.get(tenant)

    def create(self, tenant: str) -> WrappedKey:
        """A fresh data key for the tenant, cached; returns it wrapped, for the sink to persist."""
        raw = AESGCM.generate_key(bit_length=256)
        key_id = os.urandom(KEY_ID_SIZE)
        nonce = os.urandom(NONCE_SIZE)
        wrapped = nonce + self._master.encrypt(nonce, raw, _wrap_aad(tenant, key_id))
        self._keys.setdefault(tenant, []).append(_DataKey(key_id, AESGCM(raw)))
        return WrappedKey(tenant, key_id, wrapped)

    def encrypt(self, tenant: str, plaintext: bytes) -> bytes:
        """Encrypts under the tenant's newest key (which must exist: see :meth:`needs_key`)."""
        if not plaintext:
            return b""
        key = self._keys[tenant][-1]
        nonce = os.urandom(NONCE_SIZE)
        header = bytes((FORMAT,)) + key.key_id + nonce
        return header + key.cipher.encrypt(nonce, plaintext, _PAYLOAD_AAD + tenant.encode())

    def decrypt(self, tenant: str, ciphertext: bytes) -> bytes | None:
        """The plaintext, or None when the key that encrypted it no longer exists (shredded)."""
        if not ciphertext:
            return b""
        if len(ciphertext) < _HEADER or ciphertext[0] != FORMAT:
            return None
        key_id = ciphertext[1 : 1 + KEY_ID_SIZE]
        nonce = ciphertext[1 + KEY_ID_SIZE : _HEADER]
        for key in self._keys.get(tenant, ()):
            if key.key_id == key_id:
                try:
                    return key.cipher.decrypt(nonce, ciphertext[_HEADER:], _PAYLOAD_AAD + tenant.encode())
                except InvalidTag:
                    return None
        return None

    def lacks_key(self, tenant: str, ciphertext: bytes) -> bool:
        """Whether the key this ciphertext names is missing from the cache (it may exist in the
        sink: created by another process, or after a Forget this process saw)."""
        if len(ciphertext) < _HEADER or ciphertext[0] != FORMAT:
            return False
        key_id = ciphertext[1 : 1 + KEY_ID_SIZE]
        return all(key.key_id != key_id for key in self._keys.get(tenant, ()))

    def forget(self, tenant: str) -> None:
        """Drops the tenant's keys from memory (the sink destroys the stored copies)."""
        self._keys[tenant] = []

    def evict(self, tenant: str) -> None:
        """Forgets what is cached about the tenant, so its keys are loaded again from the sink."""
        self._keys.pop(tenant, None)
