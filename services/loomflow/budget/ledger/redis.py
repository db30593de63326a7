"""The Redis ledger: one Lua script per operation, so each check-and-book is atomic.

Key scheme (``P`` = key prefix, default ``loomflow:budget``; set it with the DSN
query ``?key_prefix=…``). Every key starts with the hash tag ``{P}``, so all of a
ledger's keys live in one slot: global limits make every operation touch global
keys, so the ledger is one shard by design. A tenant id enters a key only as
``<byte length>:<id>`` (``U``), which makes the scheme injective for any id,
including ones containing ``:``, ``*``, ``{`` or ``}``::

    {P}:limits:global | {P}:limits:default | {P}:limits:user:U     JSON [[dimension, window, max], ...]
    {P}:held:global | {P}:held:user:U                                hash 0..4: held per dimension
    {P}:use:global:<window> | {P}:use:user:<window>:U                 hash 0..5: committed usage
    {P}:rsv:U:<reservation id>                                        hash: one reservation
    {P}:call:U:<call id>                                              string: reservation id (idempotency)
    {P}:expiry                                                        zset: open reservations by expiry

Windows are ``all``, ``d2026-11-24`` and ``m2026-11``; day and month buckets
expire on their own once their window is over. An open reservation and its
call-id key never expire by TTL (that could leak a hold); once settled (committed,
released, or found expired) they are kept for the retention, then dropped.
Expired holds are swept lazily, at most 256 per operation, oldest first: until
swept they still count, so a backlog can only refuse, never overshoot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loomflow.budget.ledger.base import decode_limits, encode_limits
from loomflow.budget.models import (
    AppliesTo,
    Charge,
    CommitOutcome,
    Dimension,
    ForgetReceipt,
    KeptReservation,
    Limit,
    LimitState,
    LimitTarget,
    Moment,
    Reservation,
    ReserveOutcome,
    State,
    StatusSnapshot,
    TenantExport,
    Window,
    refusal,
)
from loomflow.budget.windows import recent_window_keys
from loomflow.kernel.backends import dsn as dsns
from loomflow.kernel.backends import redis as redis_backend
from loomflow.kernel.backends.errors import unavailable_on_outage
from loomflow.kernel.errors import NotFound

DEFAULT_PREFIX = "loomflow:budget"
PURGE_BATCH = 256
DAY_BUCKET_TTL_MS = 2 * 86_400_000  # refreshed on every write: outlives the day it counts
MONTH_BUCKET_TTL_MS = 32 * 86_400_000

# Shared by every script. Conventions: a held vector is hash fields "0".."4"
# (input, output, total, cost, wall); a usage bucket is "0".."5" (input, output,
# cached input, cache write, cost, wall); a reservation keeps its hold as h0..h5.
_PRELUDE = r"""
local function hold_vector(i, o, cost, wall)
  return {tonumber(i), tonumber(o), tonumber(i) + tonumber(o), tonumber(cost), tonumber(wall)}
end

local function add_held(key, vector, sign)
  for d = 1, 5 do
    if vector[d] ~= 0 then redis.call('HINCRBY', key, tostring(d - 1), sign * vector[d]) end
  end
end

local function settle_keys(rkey, ckey, retention)
  redis.call('PEXPIRE', rkey, retention)
  if ckey then redis.call('PEXPIRE', ckey, retention) end
end

-- Lazy expiry: holds whose time has come stop counting before anything is read.
local function purge(expiry, global_held, now, batch, retention)
  local due = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, batch)
  for _, rkey in ipairs(due) do
    local f = redis.call('HMGET', rkey, 'st', 'uh', 'ck', 'h0', 'h1', 'h4', 'h5')
    if f[1] == 'h' then
      local v = hold_vector(f[4], f[5], f[6], f[7])
      add_held(f[2], v, -1)
      add_held(global_held, v, -1)
      redis.call('HSET', rkey, 'st', 'x')
      settle_keys(rkey, f[3], retention)
    end
    redis.call('ZREM', expiry, rkey)
  end
end

local function committed(bucket, dim)
  local f = redis.call('HMGET', bucket, '0', '1', '4', '5')
  local i, o = tonumber(f[1] or 0), tonumber(f[2] or 0)
  if dim == 0 then return i end
  if dim == 1 then return o end
  if dim == 2 then return i + o end
  if dim == 3 then return tonumber(f[3] or 0) end
  return tonumber(f[4] or 0)
end

-- Flattened limit states: applies (0 global, 1 user), dimension, window, max, committed, reserved.
local function states(limits_json, applies, held_key, buckets, out)
  if not limits_json then return end
  for _, l in ipairs(cjson.decode(limits_json)) do
    local dim, win, max = l[1], l[2], l[3]
    local reserved = tonumber(redis.call('HGET', held_key, tostring(dim)) or 0)
    local row = {applies, dim, win, max, committed(buckets[win + 1], dim), reserved}
    for _, v in ipairs(row) do out[#out + 1] = v end
  end
end

local function all_states(k, first)
  -- k[first..first+2]: limits global/default/user; then held user/global; then use user x3, global x3.
  local user_limits = redis.call('GET', k[first + 2]) or redis.call('GET', k[first + 1])
  local out = {}
  states(redis.call('GET', k[first]), 0, k[first + 4], {k[first + 8], k[first + 9], k[first + 10]}, out)
  states(user_limits, 1, k[first + 3], {k[first + 5], k[first + 6], k[first + 7]}, out)
  return out
end
"""

# KEYS: 1 call, 2 reservation, 3 expiry, 4.. the 11 state keys (see _state_keys)
# ARGV: 1 now, 2 rid, 3 call id, 4 created, 5 expires, 6..11 hold (h0..h5), 12 priced as, 13 retention, 14 batch
_RESERVE = (
    _PRELUDE
    + r"""
local now, retention = tonumber(ARGV[1]), tonumber(ARGV[13])
purge(KEYS[3], KEYS[8], now, tonumber(ARGV[14]), retention)
local earlier = redis.call('GET', KEYS[1])
if earlier then
  local rkey = string.sub(KEYS[2], 1, #KEYS[2] - #ARGV[2]) .. earlier
  local f = redis.call('HMGET', rkey, 'cr', 'ex', 'h0', 'h1', 'h2', 'h3', 'h4', 'h5', 'hp')
  if f[1] then
    local reply = {'replay', earlier}
    for i = 1, 9 do reply[#reply + 1] = f[i] end
    for _, v in ipairs(all_states(KEYS, 4)) do reply[#reply + 1] = v end
    return reply
  end
end
local hold = hold_vector(ARGV[6], ARGV[7], ARGV[10], ARGV[11])
local current = all_states(KEYS, 4)
for s = 1, #current, 6 do
  local dim, max, used = current[s + 1], current[s + 3], current[s + 4] + current[s + 5]
  local amount = hold[dim + 1]
  if (amount == 0 and used >= max) or (amount > 0 and used + amount > max) then
    return {'refused', current[s], dim, current[s + 2], max, current[s + 4], current[s + 5], amount}
  end
end
add_held(KEYS[7], hold, 1)
add_held(KEYS[8], hold, 1)
redis.call('HSET', KEYS[2], 'st', 'h', 'call', ARGV[3], 'cr', ARGV[4], 'ex', ARGV[5],
  'h0', ARGV[6], 'h1', ARGV[7], 'h2', ARGV[8], 'h3', ARGV[9], 'h4', ARGV[10], 'h5', ARGV[11], 'hp', ARGV[12],
  'uh', KEYS[7], 'ck', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[5], KEYS[2])
local reply = {'ok'}
for s = 1, #current, 6 do
  current[s + 5] = current[s + 5] + hold[current[s + 1] + 1]
end
for _, v in ipairs(current) do reply[#reply + 1] = v end
return reply
"""
)

# KEYS: 1 reservation, 2 expiry, 3.. the 11 state keys
# ARGV: 1 now, 2..7 charge (c0..c5), 8 retention, 9 batch, 10 day ttl, 11 month ttl
_COMMIT = (
    _PRELUDE
    + r"""
local now, retention = tonumber(ARGV[1]), tonumber(ARGV[8])
purge(KEYS[2], KEYS[7], now, tonumber(ARGV[9]), retention)
local f = redis.call('HMGET', KEYS[1], 'st', 'ck', 'h0', 'h1', 'h4', 'h5', 'c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'hp',
  'h2', 'h3')
if not f[1] then return {'missing'} end
-- Every answer carries the hold as granted (h0..h5), so the caller can flag a commit above it.
local granted = {f[3], f[4], f[14], f[15], f[5], f[6]}
if f[1] == 'c' then
  local reply = {'replay'}
  for i = 7, 13 do reply[#reply + 1] = f[i] end
  for _, v in ipairs(granted) do reply[#reply + 1] = v end
  for _, v in ipairs(all_states(KEYS, 3)) do reply[#reply + 1] = v end
  return reply
end
if f[1] == 'h' then
  local v = hold_vector(f[3], f[4], f[5], f[6])
  add_held(KEYS[6], v, -1)
  add_held(KEYS[7], v, -1)
  redis.call('ZREM', KEYS[2], KEYS[1])
end
redis.call('HSET', KEYS[1], 'st', 'c', 'c0', ARGV[2], 'c1', ARGV[3], 'c2', ARGV[4], 'c3', ARGV[5],
  'c4', ARGV[6], 'c5', ARGV[7])
settle_keys(KEYS[1], f[2], retention)
for b = 8, 13 do
  for field = 0, 5 do
    local amount = ARGV[2 + field]
    if amount ~= '0' then redis.call('HINCRBY', KEYS[b], tostring(field), amount) end
  end
end
redis.call('PEXPIRE', KEYS[9], ARGV[10])
redis.call('PEXPIRE', KEYS[12], ARGV[10])
redis.call('PEXPIRE', KEYS[10], ARGV[11])
redis.call('PEXPIRE', KEYS[13], ARGV[11])
local reply = {'ok', f[13]}
for _, v in ipairs(granted) do reply[#reply + 1] = v end
for _, v in ipairs(all_states(KEYS, 3)) do reply[#reply + 1] = v end
return reply
"""
)

# KEYS: 1 reservation, 2 expiry, 3 user held, 4 global held
# ARGV: 1 now, 2 retention, 3 batch
_RELEASE = (
    _PRELUDE
    + r"""
local now, retention = tonumber(ARGV[1]), tonumber(ARGV[2])
purge(KEYS[2], KEYS[4], now, tonumber(ARGV[3]), retention)
local f = redis.call('HMGET', KEYS[1], 'st', 'ck', 'h0', 'h1', 'h4', 'h5')
if not f[1] then return -1 end
if f[1] ~= 'h' then return 0 end
local v = hold_vector(f[3], f[4], f[5], f[6])
add_held(KEYS[3], v, -1)
add_held(KEYS[4], v, -1)
redis.call('HSET', KEYS[1], 'st', 'r')
redis.call('ZREM', KEYS[2], KEYS[1])
settle_keys(KEYS[1], f[2], retention)
return 1
"""
)

# KEYS: 1 expiry, 2.. the 11 state keys.  ARGV: 1 now, 2 retention, 3 batch
_STATUS = (
    _PRELUDE
    + r"""
purge(KEYS[1], KEYS[6], tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[2]))
local reply = redis.call('HMGET', KEYS[7], '0', '1', '2', '3', '4', '5')
for i = 1, 6 do reply[i] = reply[i] or '0' end
for _, v in ipairs(all_states(KEYS, 2)) do reply[#reply + 1] = v end
return reply
"""
)

# KEYS: 1 expiry, 2 user held, 3 global held, 4.. the tenant's reservation keys. Returns {deleted, released}.
_FORGET_RESERVATIONS = (
    _PRELUDE
    + r"""
local deleted, released = 0, 0
for i = 4, #KEYS do
  local f = redis.call('HMGET', KEYS[i], 'st', 'ck', 'h0', 'h1', 'h4', 'h5')
  if f[1] then
    if f[1] == 'h' then
      local v = hold_vector(f[3], f[4], f[5], f[6])
      add_held(KEYS[2], v, -1)
      add_held(KEYS[3], v, -1)
      redis.call('ZREM', KEYS[1], KEYS[i])
      released = released + 1
    end
    if f[2] then redis.call('DEL', f[2]) end
    redis.call('DEL', KEYS[i])
    deleted = deleted + 1
  end
end
return {deleted, released}
"""
)

# KEYS: 1 user held, 2 user limits, 3.. the tenant's usage buckets. Returns {usage buckets deleted, override removed}.
# The user's held hash stays only while it still counts holds (of reservations made after the erase began).
_FORGET_STATE = r"""
local windows = 0
for i = 3, #KEYS do windows = windows + redis.call('DEL', KEYS[i]) end
local override = redis.call('DEL', KEYS[2])
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  if tonumber(v) ~= 0 then return {windows, override} end
end
redis.call('DEL', KEYS[1])
return {windows, override}
"""

_GLOB_SPECIAL = frozenset("*?[]\\")
_STATES = {"h": State.HELD, "c": State.COMMITTED, "r": State.RELEASED, "x": State.EXPIRED}


def _glob_literal(text: str) -> str:
    """``text`` as a Redis glob pattern that matches only itself."""
    return "".join("\\" + ch if ch in _GLOB_SPECIAL else ch for ch in text)


WHAT = "budget ledger (Redis)"  # a read-only replica after a failover counts as down: nothing can be booked there


def _states(flat: Sequence[Any]) -> list[LimitState]:
    return [
        LimitState(
            Limit(Dimension(int(flat[i + 1])), Window(int(flat[i + 2])), int(flat[i + 3])),
            AppliesTo.GLOBAL if int(flat[i]) == 0 else AppliesTo.USER,
            int(flat[i + 4]),
            int(flat[i + 5]),
        )
        for i in range(0, len(flat), 6)
    ]


class RedisLedger:
    def __init__(self, dsn: str, *, retention_ms: int = 3_600_000, pool_size: int = 10) -> None:
        url, self.prefix = dsns.parse(dsn).without_option("key_prefix", DEFAULT_PREFIX)  # ours, not redis-py's
        self.retention_ms = max(1, retention_ms)
        self._client = redis_backend.open_client(
            url.secret_url,
            decode_responses=True,
            max_connections=pool_size,
            wait_for_connection=10,
            connect_timeout=2,
            socket_timeout=5,
            retries=2,
        )
        self._reserve = self._client.register_script(_RESERVE)
        self._commit = self._client.register_script(_COMMIT)
        self._release = self._client.register_script(_RELEASE)
        self._status = self._client.register_script(_STATUS)
        self._forget_reservations = self._client.register_script(_FORGET_RESERVATIONS)
        self._forget_state = self._client.register_script(_FORGET_STATE)
        tag = "{" + self.prefix + "}"
        self._tag = tag
        self._expiry = f"{tag}:expiry"

    async def start(self) -> None:
        return None  # connections are made on first use, so a Redis that is down cannot stop start-up

    async def close(self) -> None:
        await self._client.aclose()

    # -- keys --------------------------------------------------------------

    @staticmethod
    def _u(tenant: str) -> str:
        return f"{len(tenant.encode())}:{tenant}"

    def _state_keys(self, tenant: str, at: Moment) -> list[str]:
        """Limits (global, default, user), held (user, global), usage user (all, day, month), global (same)."""
        tag, u = self._tag, self._u(tenant)
        return [
            f"{tag}:limits:global",
            f"{tag}:limits:default",
            f"{tag}:limits:user:{u}",
            f"{tag}:held:user:{u}",
            f"{tag}:held:global",
            f"{tag}:use:user:all:{u}",
            f"{tag}:use:user:{at.day}:{u}",
            f"{tag}:use:user:{at.month}:{u}",
            f"{tag}:use:global:all",
            f"{tag}:use:global:{at.day}",
            f"{tag}:use:global:{at.month}",
        ]

    def _reservation_key(self, tenant: str, reservation_id: str) -> str:
        return f"{self._tag}:rsv:{self._u(tenant)}:{reservation_id}"

    def _limits_key(self, target: LimitTarget, tenant: str) -> str:
        if target is LimitTarget.GLOBAL:
            return f"{self._tag}:limits:global"
        if target is LimitTarget.DEFAULT_USER:
            return f"{self._tag}:limits:default"
        return f"{self._tag}:limits:user:{self._u(tenant)}"

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        with unavailable_on_outage(WHAT):
            return await script(keys=keys, args=args)

    # -- operations ----------------------------------------------------------

    async def reserve(self, tenant: str, reservation: Reservation, at: Moment) -> ReserveOutcome:
        held = reservation.held
        keys = [
            f"{self._tag}:call:{self._u(tenant)}:{reservation.call_id}",
            self._reservation_key(tenant, reservation.reservation_id),
            self._expiry,
            *self._state_keys(tenant, at),
        ]
        args: list[Any] = [
            at.now_ms,
            reservation.reservation_id,
            reservation.call_id,
            reservation.created_ms,
            reservation.expires_ms,
            *held.stored,
            held.priced_as,
            self.retention_ms,
            PURGE_BATCH,
        ]
        reply = await self._call(self._reserve, keys, args)
        tag = reply[0]
        if tag == "refused":
            applies, dim, win, maximum, committed, reserved, amount = (int(v) for v in reply[1:8])
            state = LimitState(
                Limit(Dimension(dim), Window(win), maximum),
                AppliesTo.GLOBAL if applies == 0 else AppliesTo.USER,
                committed,
                reserved,
            )
            raise refusal(state, amount)
        if tag == "replay":
            rid, created, expires = reply[1], int(reply[2]), int(reply[3])
            original = Reservation(
                reservation_id=rid,
                call_id=reservation.call_id,
                held=Charge.from_stored([int(v) for v in reply[4:10]], reply[10] or ""),
                created_ms=created,
                expires_ms=expires,
            )
            return ReserveOutcome(original, True, _states(reply[11:]))
        return ReserveOutcome(reservation, False, _states(reply[1:]))

    async def commit(self, tenant: str, reservation_id: str, charge: Charge, at: Moment) -> CommitOutcome:
        keys = [self._reservation_key(tenant, reservation_id), self._expiry, *self._state_keys(tenant, at)]
        args: list[Any] = [
            at.now_ms,
            *charge.stored,
            self.retention_ms,
            PURGE_BATCH,
            DAY_BUCKET_TTL_MS,
            MONTH_BUCKET_TTL_MS,
        ]
        reply = await self._call(self._commit, keys, args)
        if reply[0] == "missing":
            raise NotFound(f"reservation {reservation_id!r} not found")
        if reply[0] == "replay":
            original = Charge.from_stored([int(v) for v in reply[1:7]], reply[7] or "")
            held = Charge.from_stored([int(v or 0) for v in reply[8:14]], original.priced_as)
            return CommitOutcome(original, True, _states(reply[14:]), held)
        held = Charge.from_stored([int(v or 0) for v in reply[2:8]], reply[1] or "")
        return CommitOutcome(charge, False, _states(reply[8:]), held)

    async def release(self, tenant: str, reservation_id: str, at: Moment) -> bool:
        keys = [
            self._reservation_key(tenant, reservation_id),
            self._expiry,
            f"{self._tag}:held:user:{self._u(tenant)}",
            f"{self._tag}:held:global",
        ]
        reply = int(await self._call(self._release, keys, [at.now_ms, self.retention_ms, PURGE_BATCH]))
        if reply < 0:
            raise NotFound(f"reservation {reservation_id!r} not found")
        return reply == 1

    async def status(self, tenant: str, at: Moment) -> StatusSnapshot:
        keys = [self._expiry, *self._state_keys(tenant, at)]
        reply = await self._call(self._status, keys, [at.now_ms, self.retention_ms, PURGE_BATCH])
        return StatusSnapshot(_states(reply[6:]), Charge.from_stored([int(v) for v in reply[:6]]))

    async def set_limits(self, target: LimitTarget, tenant: str, limits: Sequence[Limit]) -> None:
        key = self._limits_key(target, tenant)
        with unavailable_on_outage(WHAT):
            if limits:
                await self._client.set(key, encode_limits(limits))
            else:
                await self._client.delete(key)

    async def get_limits(self, target: LimitTarget, tenant: str) -> list[Limit]:
        with unavailable_on_outage(WHAT):
            return decode_limits(await self._client.get(self._limits_key(target, tenant)))

    # -- erasure and export ----------------------------------------------------

    def _usage_keys(self, tenant: str, at: Moment) -> list[str]:
        # Day and month buckets expire on their own (DAY/MONTH_BUCKET_TTL_MS): these are all that can exist.
        windows = recent_window_keys(at.now_ms, days=3, months=2)
        return [f"{self._tag}:use:user:{w}:{self._u(tenant)}" for w in windows]

    async def _reservation_keys(self, tenant: str) -> list[str]:
        """The tenant's reservation keys. SCAN, not a script: it must not block other tenants' calls.

        ``<byte length>:<id>`` before the reservation id makes the prefix match one tenant only.
        """
        pattern = _glob_literal(f"{self._tag}:rsv:{self._u(tenant)}:") + "*"
        return [key async for key in self._client.scan_iter(match=pattern, count=1000)]

    async def forget(self, tenant: str, at: Moment) -> ForgetReceipt:
        user_held = f"{self._tag}:held:user:{self._u(tenant)}"
        deleted = released = 0
        with unavailable_on_outage(WHAT):
            # Reservations first: once they are gone a racing Commit finds nothing to book.
            keys = await self._reservation_keys(tenant)
            for start in range(0, len(keys), PURGE_BATCH):
                batch = keys[start : start + PURGE_BATCH]
                gone, freed = await self._forget_reservations(
                    keys=[self._expiry, user_held, f"{self._tag}:held:global", *batch], args=[]
                )
                deleted, released = deleted + int(gone), released + int(freed)
            windows, override = await self._forget_state(
                keys=[user_held, self._limits_key(LimitTarget.USER, tenant), *self._usage_keys(tenant, at)], args=[]
            )
        return ForgetReceipt(deleted, released, int(windows), bool(int(override)))

    async def export(self, tenant: str, at: Moment) -> TenantExport:
        usage_keys = self._usage_keys(tenant, at)
        windows = recent_window_keys(at.now_ms, days=3, months=2)
        with unavailable_on_outage(WHAT):
            keys = await self._reservation_keys(tenant)
            async with self._client.pipeline(transaction=False) as pipe:
                for key in (*usage_keys, *keys):
                    pipe.hgetall(key)
                pipe.get(self._limits_key(LimitTarget.USER, tenant))
                replies = await pipe.execute()
        usage = {
            window: Charge.from_stored([int(bucket.get(str(f), 0)) for f in range(6)])
            for window, bucket in zip(windows, replies[: len(usage_keys)], strict=True)
            if bucket
        }
        prefix_length = len(f"{self._tag}:rsv:{self._u(tenant)}:")
        kept = [
            _kept(key[prefix_length:], fields)
            for key, fields in zip(keys, replies[len(usage_keys) : -1], strict=True)
            if fields.get("st") in _STATES
        ]
        return TenantExport(usage, kept, decode_limits(replies[-1]))


def _kept(reservation_id: str, fields: dict[str, str]) -> KeptReservation:
    held = Charge.from_stored([int(fields.get(f"h{i}", 0)) for i in range(6)], fields.get("hp", ""))
    state = _STATES[fields["st"]]
    charged = (
        Charge.from_stored([int(fields.get(f"c{i}", 0)) for i in range(6)], fields.get("hp", ""))
        if state is State.COMMITTED
        else None
    )
    record = Reservation(reservation_id, fields.get("call", ""), held, int(fields["cr"]), int(fields["ex"]))
    return KeptReservation(record, state, charged)
