"""Refused calls, recorded: every UNAUTHENTICATED or PERMISSION_DENIED answer leaves a trace.

Each refusal of any service becomes one WARNING line on the ``loomflow.security``
logger (event ``auth_refused``: the RPC, the code, the reason, the verified
principal if there was one, the subject an unverifiable token *claimed*, the
tenant the request targeted, the peer) and one count of the
``loomflow_auth_refusals`` metric. A service may also register a hook
(``HostedService.on_refusal``): the suite's public edge records each refusal
for the targeted tenant.

The work happens only on the refusal path, never on an admitted call. Log lines
and hook calls are rate limited per (claimed principal, target) so a flood of
forged tokens cannot fill a disk or a tenant's records; the metric counts them all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jwt

from loomflow.kernel.ratelimit import TenantLimiter
from loomflow.kernel.telemetry import meter, tenant_label
from loomflow.kernel.tenancy import display_tenant

log = logging.getLogger("loomflow.security")

_CLAIM_CHARS = 128


@dataclass(frozen=True)
class Refusal:
    """One refused call, as the security log and a service's refusal hook see it."""

    rpc: str
    code: str
    reason: str
    principal: str
    """``role:subject`` of a verified token; ``-`` when the caller was not authenticated."""
    claimed_subject: str
    """The ``sub`` an unverified token claimed (attacker-controlled; never trusted), or ``""``."""
    tenant: str | None
    """The partition key the request's scope named, when the request was valid; else None."""
    peer: str


RefusalHook = Callable[[Refusal], None]


def claimed_subject(token: str | None) -> str:
    """The ``sub`` a token claims, read without verifying it: for the record only."""
    if not token:
        return ""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return ""
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject[:_CLAIM_CHARS] if isinstance(subject, str) else ""


class RefusalRecorder:
    """Logs and counts refusals, and hands them to the hooks services registered."""

    def __init__(
        self,
        hooks: Mapping[str, RefusalHook] | None = None,
        *,
        per_second: float = 5.0,
        burst: int = 20,
        max_keys: int = 10_000,
    ) -> None:
        self._hooks = dict(hooks or {})
        self._throttle = TenantLimiter(per_second, burst, 0, max_tenants=max_keys)
        self._count = meter("loomflow.rpc").create_counter(
            "loomflow_auth_refusals", description="calls refused as UNAUTHENTICATED or PERMISSION_DENIED"
        )

    def record(self, service: str, refusal: Refusal) -> None:
        target = refusal.tenant
        self._count.add(
            1,
            {
                "service": service,
                "code": refusal.code,
                "user_id": tenant_label(target) if target is not None else "-",
            },
        )
        who = refusal.principal if refusal.principal != "-" else f"claimed:{refusal.claimed_subject}"
        if not self._throttle.allow(f"{who}\x00{target}"):
            return
        log.warning(
            "auth_refused",
            extra={
                "event": "auth_refused",
                "rpc": refusal.rpc,
                "code": refusal.code,
                "reason": refusal.reason,
                "principal": refusal.principal,
                "claimed_subject": refusal.claimed_subject,
                "target_user_id": display_tenant(target) if target is not None else "-",
                "peer": refusal.peer,
            },
        )
        hook = self._hooks.get(service)
        if hook is not None:
            try:
                hook(refusal)
            except Exception:  # a broken hook must not turn a refusal into INTERNAL
                log.exception("refusal hook of %s failed", service)
