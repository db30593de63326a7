"""Verifying tokens with public keys only: a JWKS file, a JWKS URL, or an OIDC issuer's discovery.

With any of these configured, a service holds no secret that can sign a token: a compromised pod
can present its own credential but cannot mint an operator's (tests/test_identity.py). Keys are
picked by the token's ``kid`` and each key only verifies its own algorithm (never HS256 with a
public key as the secret). Claim names for the user id and the role are configurable, so an
existing identity provider's tokens can be used as they are.

Service principals may also be proven by mTLS: a client certificate whose SAN (URI or DNS) or
CN is listed in ``service_identities`` acts as that service when the call carries no token.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import jwt

from loomflow.kernel.auth import AuthSettings, Principal, Role, TokenVerifier, principal_from_claims, verified_key
from loomflow.kernel.config import ConfigError
from loomflow.kernel.errors import Unauthenticated

log = logging.getLogger("loomflow.identity")

_DISCOVERY_TIMEOUT_S = 5.0
_MAX_VERIFIED = 10_000


class Verifier(Protocol):
    def verify(self, token: str) -> Principal: ...


class KeySource(Protocol):
    def key_for(self, kid: str | None) -> jwt.PyJWK: ...


def _pick(keys: Sequence[jwt.PyJWK], kid: str | None, where: str) -> jwt.PyJWK:
    if kid is None:
        if len(keys) == 1:
            return keys[0]
        raise Unauthenticated("invalid token: no `kid` header, and several keys could verify it")
    for key in keys:
        if key.key_id == kid:
            return key
    raise Unauthenticated(f"invalid token: no key {kid!r} in {where}")


class JwksFile:
    """Public keys from a JWKS JSON file, re-read when the file changes (key rotation by file)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] = (-1, -1)
        self._keys: list[jwt.PyJWK] = []
        self._reload()

    def _reload(self) -> None:
        st = os.stat(self._path)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        with self._lock:
            with open(self._path, encoding="utf-8") as handle:
                keys = list(jwt.PyJWKSet.from_json(handle.read()).keys)
            if not keys:
                raise ValueError(f"{self._path}: the JWKS holds no usable key")
            self._keys, self._stamp = keys, stamp

    def key_for(self, kid: str | None) -> jwt.PyJWK:
        try:
            self._reload()
        except (OSError, ValueError, jwt.PyJWTError) as error:
            log.warning("cannot re-read the JWKS file, keeping the previous keys: %s", error)
        return _pick(self._keys, kid, self._path)


class JwksUrl:
    """Public keys fetched from a JWKS URL, cached and refreshed (PyJWKClient: refreshed after
    ``lifespan`` seconds, and at most once per cooldown when a token names an unknown ``kid``)."""

    def __init__(self, url: str, lifespan_s: float = 300.0) -> None:
        self.url = url
        self._client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=lifespan_s, timeout=_DISCOVERY_TIMEOUT_S)

    def key_for(self, kid: str | None) -> jwt.PyJWK:
        try:
            if kid is None:
                return _pick(self._client.get_signing_keys(), None, self.url)
            return self._client.get_signing_key(kid)
        except jwt.PyJWKClientError as error:
            raise Unauthenticated(f"invalid token: {error}") from None


def discover_jwks_uri(issuer: str) -> str:
    """The ``jwks_uri`` of an OIDC issuer's ``/.well-known/openid-configuration``."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    with urllib.request.urlopen(url, timeout=_DISCOVERY_TIMEOUT_S) as reply:  # an operator's URL
        document = json.load(reply)
    if document.get("issuer", "").rstrip("/") != issuer.rstrip("/"):
        raise ValueError(f"{url} names issuer {document.get('issuer')!r}, not {issuer!r}")
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str) or not jwks_uri:
        raise ValueError(f"{url} has no jwks_uri")
    return jwks_uri


class PublicKeyVerifier:
    """Verifies bearer tokens against public keys; same contract as ``TokenVerifier.verify``."""

    def __init__(self, keys: KeySource, settings: AuthSettings, issuer: str, leeway_s: float = 30.0) -> None:
        self._keys = keys
        self._settings = settings
        self._issuer = issuer
        self._leeway = leeway_s
        self._verified: dict[bytes, tuple[Principal, float]] = {}

    def verify(self, token: str) -> Principal:
        cache_key = verified_key(token)
        cached = self._verified.get(cache_key)
        if cached is not None:
            if time.time() < cached[1]:
                return cached[0]
            del self._verified[cache_key]
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.key_for(header.get("kid"))
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],  # the key's own algorithm, whatever the header says
                audience=self._settings.jwt_audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        principal = principal_from_claims(claims, self._settings)
        if len(self._verified) >= _MAX_VERIFIED:
            self._verified.clear()
        self._verified[cache_key] = (principal, float(claims["exp"]))
        return principal


def peer_identities(auth_context: Mapping[str, Iterable[bytes]]) -> list[str]:
    """The verified client certificate's SANs (URI, DNS) and CN, from grpc's auth context."""
    names = [v.decode() for v in auth_context.get("x509_subject_alternative_name", ())]
    names += [v.decode() for v in auth_context.get("x509_common_name", ())]
    return names


def build_verifier(auth: AuthSettings) -> Verifier:
    """Public keys when any key source is configured (JWKS file, JWKS URL, OIDC issuer), else the
    HS256 secret or PEM public key of :class:`TokenVerifier` (development, single-key setups)."""
    issuer = auth.oidc_issuer or auth.jwt_issuer
    try:
        if auth.jwks_file:
            return PublicKeyVerifier(JwksFile(auth.jwks_file), auth, issuer)
        if auth.jwks_url or auth.oidc_issuer:
            url = auth.jwks_url or discover_jwks_uri(auth.oidc_issuer)
            return PublicKeyVerifier(JwksUrl(url), auth, issuer)
    except (OSError, ValueError, jwt.PyJWTError) as error:
        where = "LOOMFLOW_AUTH_JWKS_FILE" if auth.jwks_file else "LOOMFLOW_AUTH_OIDC_ISSUER / LOOMFLOW_AUTH_JWKS_URL"
        raise ConfigError(f"{where}: {error}") from None
    return TokenVerifier(auth)


class ServiceIdentities:
    """Client-certificate identities that act as service principals (mTLS instead of a token)."""

    def __init__(self, configured: str) -> None:
        self._names = frozenset(n.strip() for n in configured.split(",") if n.strip())

    def __bool__(self) -> bool:
        return bool(self._names)

    def principal(self, auth_context: Mapping[str, Iterable[bytes]]) -> Principal | None:
        for name in peer_identities(auth_context):
            if name in self._names:
                return Principal(Role.SERVICE, name)
        return None
