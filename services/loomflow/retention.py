"""Retention: how long each kind of stored record lives, and the sweeper that enforces it.

A suite-level module beside ``suite.py``, not in the kernel: it names the kinds each service keeps
(Memory's episodes, Policy's approvals, Audit's payloads), one deployment-wide promise read by every service alike.

Deployment-wide limits are settings (section ``retention``; 0 keeps records forever, the
behaviour before retention existed). Per-tenant overrides live in one YAML file named by
``--retention-file`` that every service reads at start::

    tenants:
      alice: {memory_episodes_days: 7, policy_approvals_days: 30}
      bob: {memory_episodes_days: 0}    # bob's episodes are kept forever

A file keyed by tenant is the override's home because retention is an operator's
promise about a deployment (a contract per customer), set where the operator sets the
rest of the deployment (a ConfigMap on Kubernetes), read by every service alike, and
reviewable in version control; it needs no RPC, no store of its own and no new way to
lose it when a database is restored.

The sweeper of each service runs one pass per (jittered) interval. A pass visits, per
kind, at most ``tenants_per_pass`` tenants holding expired rows (continuing where the
last pass stopped, in tenant order) and deletes at most ``batch_rows`` rows of each, so
a tenant with a huge pile takes as long to drain as it must while every other tenant's
rows still go in the same pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loomflow.kernel.config import ConfigError, option
from loomflow.kernel.telemetry import meter

log = logging.getLogger("loomflow.retention")

SECTION = "retention"
DAY_MS = 86_400_000
KINDS = ("memory_episodes", "policy_approvals", "audit_payloads", "agent_paused_runs")
"""Kinds of records with a retention; each is an override key ``<kind>_days`` and, except where
:data:`OVERRIDE_ONLY` says, a ``<kind>_days`` setting."""
OVERRIDE_ONLY = {"agent_paused_runs": "LOOMFLOW_AGENT_PAUSE_TTL_MS"}
"""Kinds whose deployment-wide value is a service's own setting (named here); the file overrides it per tenant."""


@dataclass(frozen=True)
class Settings:
    memory_episodes_days: float = option(0.0, "days Memory keeps an episode (0: forever)")
    policy_approvals_days: float = option(
        0.0, "days Policy keeps a resolved or expired approval, with its arguments (0: forever)"
    )
    audit_payloads_days: float = option(
        0.0,
        "days Audit keeps an entry's payload readable; then it is crypto-shredded within a day, "
        "the entry and its chain stay (0: forever)",
    )
    file: str = option("", "YAML file of per-tenant retention overrides (`tenants: {id: {<kind>_days: n}}`)")
    sweep_seconds: float = option(300.0, "seconds between retention sweeps, ±20 % jitter (0: no sweeper)")
    batch_rows: int = option(500, "rows one sweep deletes per tenant and kind at most")
    tenants_per_pass: int = option(200, "tenants one sweep visits per kind at most (the next pass continues)")


@dataclass(frozen=True)
class Retention:
    """How long one kind of record lives: a default and per-tenant overrides, in ms (0: forever)."""

    default_ms: int = 0
    overrides: Mapping[str, int] = field(default_factory=dict)

    def keeps_forever(self) -> bool:
        return self.default_ms == 0 and not any(self.overrides.values())

    def cutoff(self, tenant: str, now_ms: int) -> int | None:
        """Records of ``tenant`` created before this are expired (None: the tenant keeps them)."""
        keep = self.overrides.get(tenant, self.default_ms)
        return now_ms - keep if keep > 0 else None

    def widest_cutoff(self, now_ms: int) -> int | None:
        """The latest cutoff of any tenant: no record newer than it is expired for anyone."""
        kept = [ms for ms in (self.default_ms, *self.overrides.values()) if ms > 0]
        return now_ms - min(kept) if kept else None


def _days_ms(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{where}: expected a number of days ≥ 0, got {value!r}")
    return int(value * DAY_MS)


def load_overrides(path: str) -> dict[str, dict[str, int]]:
    """``kind → tenant → ms`` from the overrides file (empty path: none); ConfigError when malformed."""
    if not path:
        return {}
    try:
        document = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"LOOMFLOW_RETENTION_FILE={path}: {exc}") from None
    tenants = document.get("tenants", {}) if isinstance(document, dict) else None
    if not isinstance(tenants, dict) or set(document) - {"tenants"}:
        raise ConfigError(f"{path}: expected one key, `tenants:`, mapping tenant ids to retention days")
    found: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
    for tenant, values in tenants.items():
        if not isinstance(tenant, str) or not tenant or not isinstance(values, dict):
            raise ConfigError(f"{path}: tenant {tenant!r} must be a user id mapping to `<kind>_days: n`")
        for key, value in values.items():
            kind = str(key).removesuffix("_days")
            if kind not in KINDS or not str(key).endswith("_days"):
                raise ConfigError(f"{path}: tenant {tenant!r}: unknown setting {key!r} (known: {_known()})")
            found[kind][tenant] = _days_ms(value, f"{path}: tenant {tenant!r} {key}")
    return found


def _known() -> str:
    return ", ".join(f"{kind}_days" for kind in KINDS)


def retention_of(settings: Settings, kind: str) -> Retention:
    """The retention of one kind: the setting's default plus the file's overrides."""
    if kind in OVERRIDE_ONLY:
        return Retention(0, load_overrides(settings.file).get(kind, {}))
    default = _days_ms(getattr(settings, f"{kind}_days"), f"LOOMFLOW_RETENTION_{kind.upper()}_DAYS")
    return Retention(default, load_overrides(settings.file).get(kind, {}))


def check(settings: Settings) -> None:
    """Refuses unusable settings at start (a bad file stops the server before it binds)."""
    for kind in KINDS:
        retention_of(settings, kind)
    if settings.sweep_seconds < 0:
        raise ConfigError("LOOMFLOW_RETENTION_SWEEP_SECONDS must be ≥ 0")
    for name in ("batch_rows", "tenants_per_pass"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"LOOMFLOW_RETENTION_{name.upper()} must be at least 1")


TenantsBefore = Callable[[int, str, int], Awaitable[list[str]]]
"""(cutoff_ms, after_tenant, limit) → sorted tenants holding records created before the cutoff."""
DeleteBefore = Callable[[str, int, int], Awaitable[int]]
"""(tenant, cutoff_ms, limit) → how many of the tenant's records before the cutoff were removed."""


@dataclass
class SweptKind:
    """One kind a service sweeps: its retention and the two store calls that find and remove."""

    name: str
    retention: Retention
    tenants_before: TenantsBefore
    delete_before: DeleteBefore
    cursor: str = ""
    """The last tenant visited; the next pass continues after it (wraps to the start)."""


_meter = meter("loomflow.retention")
_swept = _meter.create_counter(
    "loomflow_retention_swept_rows", unit="{row}", description="Records removed by retention, by service and kind"
)
_errors = _meter.create_counter(
    "loomflow_retention_sweep_errors", unit="{error}", description="Retention sweeps that failed, by service and kind"
)
_last_sweep = _meter.create_up_down_counter(
    "loomflow_retention_last_sweep_timestamp_seconds",
    unit="s",
    description="Unix time of the service's last completed retention sweep (a gauge)",
)
_last_seen: dict[str, float] = {}


def _mark_swept(service: str, now_s: float) -> None:
    # An up-down counter moved by the difference reads as a gauge of the latest time.
    _last_sweep.add(now_s - _last_seen.get(service, 0.0), {"service": service})
    _last_seen[service] = now_s


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Sweeper:
    """Runs retention passes for one service's kinds, periodically once started."""

    def __init__(
        self,
        service: str,
        kinds: list[SweptKind],
        settings: Settings,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.service = service
        self.kinds = [k for k in kinds if not k.retention.keeps_forever()]
        self._settings = settings
        self._clock = clock
        self._jitter = jitter
        self._task: asyncio.Task[None] | None = None

    async def sweep_once(self) -> dict[str, int]:
        """One pass over every kind; returns the rows removed per kind. A kind whose store fails
        is counted as an error and retried next pass; the other kinds still run."""
        removed: dict[str, int] = {}
        for kind in self.kinds:
            try:
                removed[kind.name] = await self._sweep_kind(kind, self._clock())
            except Exception:
                _errors.add(1, {"service": self.service, "kind": kind.name})
                log.warning("retention of %s %s failed; next pass retries", self.service, kind.name, exc_info=True)
        _mark_swept(self.service, self._clock() / 1000.0)
        return removed

    async def _sweep_kind(self, kind: SweptKind, now_ms: int) -> int:
        widest = kind.retention.widest_cutoff(now_ms)
        if widest is None:
            return 0
        limit = self._settings.tenants_per_pass
        if kind.retention.default_ms == 0:
            # Only overridden tenants expire anything: visit those, not every tenant with old rows.
            named = sorted(t for t, ms in kind.retention.overrides.items() if ms > 0 and t > kind.cursor)
            tenants = named[:limit]
        else:
            tenants = await kind.tenants_before(widest, kind.cursor, limit)
        total = 0
        for tenant in tenants:
            cutoff = kind.retention.cutoff(tenant, now_ms)
            if cutoff is not None:
                total += await kind.delete_before(tenant, cutoff, self._settings.batch_rows)
        kind.cursor = tenants[-1] if len(tenants) == limit else ""
        if total:
            _swept.add(total, {"service": self.service, "kind": kind.name})
        return total

    def _interval(self) -> float:
        return self._settings.sweep_seconds * (0.8 + 0.4 * self._jitter())

    async def _run(self) -> None:
        while True:
            # Jittered: replicas started together do not sweep the same database in lockstep.
            await asyncio.sleep(self._interval())
            await self.sweep_once()

    async def start(self) -> None:
        if self.kinds and self._settings.sweep_seconds > 0:
            self._task = asyncio.create_task(self._run(), name=f"{self.service}-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
