"""Who is calling: bearer-token principals and the access rules every service applies.

Three kinds of principal, all carried as JWTs in ``authorization: Bearer …``:

* **user** (``role`` claim absent or ``"user"``): an end user; ``sub`` is their
  user id and must equal the request's ``scope.user_id``. Only the services
  that declare it (``HostedService.accepts_end_users``, the suite's edge) accept them.
* **service** (``role: "service"``): a loomflow service calling another (the
  edge calling the services behind it); acts for any tenant it names.
* **operator** (``role: "operator"``): a human or tool administering the
  suite; required for cross-tenant reads and for changes to rules and limits.

Insecure mode (an explicit flag that logs a warning) treats an unauthenticated
caller as an operator, for local development only.
"""

from __future__ import annotations

import contextvars
import enum
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from loomflow.kernel.config import ConfigError, option
from loomflow.kernel.errors import PermissionDenied, Unauthenticated
from loomflow.kernel.weak_secrets import check_secret_text


class Role(enum.Enum):
    USER = "user"
    SERVICE = "service"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    role: Role
    subject: str
    insecure: bool = False

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR


INSECURE_PRINCIPAL = Principal(Role.OPERATOR, "insecure-dev", insecure=True)

_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("loomflow_principal", default=None)


def current_principal() -> Principal:
    """The principal of the RPC being served (set by the kernel interceptor)."""
    principal = _current.get()
    if principal is None:
        raise Unauthenticated("no authenticated principal")
    return principal


def bind_principal(principal: Principal) -> contextvars.Token[Principal | None]:
    return _current.set(principal)


def require_operator(action: str) -> Principal:
    """Refuses the call unless an operator makes it; ``action`` says what was refused."""
    principal = current_principal()
    if not principal.is_operator:
        raise PermissionDenied(f"{action} requires an operator credential")
    return principal


@dataclass(frozen=True)
class AuthSettings:
    jwt_secret: str = option("", "HS256 secret that signs and verifies tokens", secret=True)
    jwt_public_key_file: str = option("", "PEM public key (RS256 or EdDSA) that verifies tokens")
    jwt_private_key_file: str = option("", "PEM private key (RS256 or EdDSA) `loomflow token` signs with")
    jwt_issuer: str = option("loomflow", "required `iss` claim")
    jwt_audience: str = option("loomflow", "required `aud` claim")
    service_token: str = option("", "token this process presents to other loomflow services", secret=True)
    service_token_file: str = option(
        "", "file holding the service token, re-read when it changes (short-lived tokens renewed by the issuer)"
    )
    jwks_file: str = option("", "JWKS JSON file of public keys that verify tokens (several kids; re-read on change)")
    jwks_url: str = option("", "JWKS URL of public keys that verify tokens (fetched, cached, refreshed)")
    oidc_issuer: str = option(
        "", "OIDC issuer URL: its discovery document names the JWKS; tokens must carry it as `iss`"
    )
    user_claim: str = option("sub", "claim holding the user id (dotted for a nested claim)")
    role_claim: str = option("role", "claim holding the role: user (or absent), service or operator")
    service_identities: str = option(
        "", "client-certificate identities (SAN URI/DNS or CN, comma-separated) that act as service principals"
    )


JWT_SECRET_SETTING = "LOOMFLOW_AUTH_JWT_SECRET (--auth-jwt-secret)"

_MAX_VERIFIED = 10_000


def verified_key(token: str) -> bytes:
    """What a verified-token cache is keyed by: the token's SHA-256 (32 bytes, where the token takes
    ~250: kept for every caller seen, up to :data:`_MAX_VERIFIED`, it was ~0.3 KB of heap per tenant)."""
    return hashlib.sha256(token.encode()).digest()


@dataclass
class TokenVerifier:
    """Verifies bearer tokens with a fixed set of algorithms (never ``none``).

    A token that verified is remembered until it expires: the same token (a
    service credential on every internal call, a user's on each of their calls)
    then costs a dict lookup instead of a signature check.
    """

    settings: AuthSettings
    _key: str | bytes = field(init=False)
    _algorithms: list[str] = field(init=False)
    _verified: dict[bytes, tuple[Principal, float]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        s = self.settings
        if s.jwt_public_key_file:
            try:
                self._key = Path(s.jwt_public_key_file).read_bytes()
            except OSError as exc:
                raise ConfigError(
                    f"LOOMFLOW_AUTH_JWT_PUBLIC_KEY_FILE (--auth-jwt-public-key-file): cannot read "
                    f"{s.jwt_public_key_file}: {exc.strerror}"
                ) from None
            self._algorithms = ["RS256", "EdDSA"]
        elif s.jwt_secret:
            check_secret_text(s.jwt_secret, JWT_SECRET_SETTING)  # a weak HS256 key would mint operator tokens
            self._key = s.jwt_secret
            self._algorithms = ["HS256"]
        else:
            raise ConfigError(
                "no token key configured: set LOOMFLOW_AUTH_JWT_SECRET (--auth-jwt-secret) or "
                "LOOMFLOW_AUTH_JWT_PUBLIC_KEY_FILE (--auth-jwt-public-key-file), "
                "or run with --insecure for local development"
            )

    def verify(self, token: str) -> Principal:
        key = verified_key(token)
        cached = self._verified.get(key)
        if cached is not None:
            if time.time() < cached[1]:
                return cached[0]
            del self._verified[key]  # expired: decode again, which says so
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options={"require": ["sub", "exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        principal = principal_from_claims(claims, self.settings)
        if len(self._verified) >= _MAX_VERIFIED:
            self._verified.clear()
        self._verified[key] = (principal, float(claims["exp"]))
        return principal


def claim(claims: dict[str, Any], name: str) -> Any:
    """A claim by name; a dotted name reads a nested claim (``realm_access.role``)."""
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def principal_from_claims(claims: dict[str, Any], settings: AuthSettings) -> Principal:
    """The principal a verified token names, read from the configured claim names."""
    role_value = claim(claims, settings.role_claim)
    if isinstance(role_value, list):  # IdPs often carry roles as a list: the strongest one counts
        known = [r for r in (Role.OPERATOR.value, Role.SERVICE.value, Role.USER.value) if r in role_value]
        role_value = known[0] if known else Role.USER.value
    try:
        role = Role(role_value if role_value is not None else Role.USER.value)
    except ValueError:
        raise Unauthenticated(f"invalid token: unknown role {role_value!r}") from None
    subject = claim(claims, settings.user_claim)
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated(f"invalid token: empty or missing {settings.user_claim!r} claim")
    return Principal(role, subject)


def mint_token(settings: AuthSettings, subject: str, role: Role = Role.USER, ttl_seconds: int = 3600) -> str:
    """Signs a token with the configured key (HS256 secret or private key file)."""
    now = int(time.time())
    claims = {
        "sub": subject,
        "role": role.value,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if settings.jwt_private_key_file:
        # The key's type picks the algorithm: a PKCS#8 PEM names no algorithm in its header.
        key = serialization.load_pem_private_key(Path(settings.jwt_private_key_file).read_bytes(), password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            return jwt.encode(claims, key, algorithm="RS256")
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return jwt.encode(claims, key, algorithm="EdDSA")
        raise ValueError(f"{settings.jwt_private_key_file}: an RSA or Ed25519 private key is needed")
    if not settings.jwt_secret:
        raise ValueError("no signing key: set LOOMFLOW_AUTH_JWT_SECRET or LOOMFLOW_AUTH_JWT_PRIVATE_KEY_FILE")
    check_secret_text(settings.jwt_secret, JWT_SECRET_SETTING)
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    """The bearer token of the call's metadata; refuses duplicated or malformed headers."""
    values = [v for k, v in (metadata or ()) if k == "authorization"]
    if not values:
        return None
    if len(values) > 1:
        raise Unauthenticated("more than one authorization header")
    value = values[0]
    text = value.decode() if isinstance(value, bytes) else value
    scheme, _, token = text.partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated("authorization must be 'Bearer <token>'")
    if not token.strip():
        raise Unauthenticated(
            "the bearer token is empty (an unset shell variable?): mint one with `loomflow token <user_id>`"
        )
    return token.strip()
