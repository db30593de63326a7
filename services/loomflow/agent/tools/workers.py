"""A pool of tool worker processes: where the Agent runs synchronous tools.

A synchronous tool may block or burn CPU for as long as it likes; on the Agent's
event loop (or in a thread, which holds the GIL and cannot be stopped) that
would stall every tenant's runs. So each call goes to an idle worker process
(:mod:`loomflow.agent.tools.worker`), and a worker that overruns the call's
deadline, dies (CPU or memory limit) or answers more than allowed is killed and
replaced. Asynchronous tools do not come here: they run on the loop and are
cancelled at their deadline.

Workers start with the Agent (``start``) and are replaced in the background;
a call waits for an idle worker within its own deadline.

One tenant cannot take the pool: a tenant holds at most ``max_per_tenant``
workers at once (by default all but one), and calls waiting for a worker are
served round-robin across tenants, so a tenant whose calls spin until their
deadline waits behind itself, never in front of another tenant. Workers also run
tools at a lower CPU priority (``nice``): a tool burning CPU until it is killed
takes what the Agent leaves, not the Agent's share of the cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from loomflow.agent.context import RunContext
from loomflow.agent.tools.worker import HEADER, MEMORY_ENV, NICE_ENV, encode

log = logging.getLogger("loomflow.agent")

_REPLY_SLACK = 1024
"""Bytes a reply frame may carry beyond its text (JSON framing, the truncation marker, escapes)."""


class ToolWorkerError(Exception):
    """A tool call the worker could not finish: it overran its deadline, died, or answered too much."""


class ToolFailed(Exception):
    """The tool itself raised; ``kind`` is the exception type's name in the worker."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class WorkerLimits:
    processes: int = 2
    memory_bytes: int = 1 << 30
    max_result_chars: int = 65_536
    preload: tuple[str, ...] = ()
    """Modules a new worker imports before it takes calls (the synchronous tools' own)."""
    max_per_tenant: int = 0
    """Workers one tenant may hold at once; 0 means all but one (at least one)."""
    nice: int = 10
    """How much lower than the Agent's a worker's CPU priority is while it runs tools (``nice(2)``)."""

    @property
    def tenant_share(self) -> int:
        return self.max_per_tenant or max(1, self.processes - 1)


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def call(self, frame: bytes, max_bytes: int) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        stdin.write(frame)
        await stdin.drain()
        (size,) = HEADER.unpack(await stdout.readexactly(HEADER.size))
        if size > max_bytes:
            raise ToolWorkerError(f"the tool answered {size} bytes, more than {max_bytes}")
        reply: dict[str, Any] = json.loads(await stdout.readexactly(size))
        return reply

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # the tool's own children too


class ToolWorkers:
    def __init__(self, limits: WorkerLimits | None = None) -> None:
        self.limits = limits or WorkerLimits()
        # Last in, first out: the worker that just answered is still hot (scheduled, cached); waking the
        # one idle longest instead cost ~10x the round trip on a loaded machine (bench/tool_worker.py).
        self._idle: list[_Worker] = []
        # Calls waiting for a worker, one queue per tenant, tenants served in turn.
        self._waiting: OrderedDict[str, deque[asyncio.Future[_Worker]]] = OrderedDict()
        self._held: dict[str, int] = {}
        """Workers each tenant holds right now (only tenants holding one)."""
        self._all: set[_Worker] = set()
        self._spawning: set[asyncio.Task[None]] = set()
        self._closed = False
        self.replaced = 0
        """Workers killed and replaced so far (deadline, crash or oversize answer)."""

    async def start(self) -> None:
        await asyncio.gather(*(self._spawn() for _ in range(self.limits.processes)))

    async def close(self) -> None:
        self._closed = True
        for task in list(self._spawning):
            task.cancel()
        for worker in list(self._all):
            worker.kill()
            await worker.process.wait()
        self._all.clear()

    async def _spawn(self) -> None:
        env = dict(os.environ)
        env[MEMORY_ENV] = str(self.limits.memory_bytes)
        env[NICE_ENV] = str(self.limits.nice)
        # The worker imports tools by module path: give it the Agent's import path (pytest's, a .pth, …).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "loomflow.agent.tools.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group, killed as one
        )
        worker = _Worker(process)
        try:
            await worker.call(encode({"preload": list(self.limits.preload)}), _REPLY_SLACK + 12_000)
        except BaseException:
            worker.kill()
            raise
        if self._closed:
            worker.kill()
            return
        self._all.add(worker)
        self._idle.append(worker)
        self._dispatch()

    # -- handing workers to tenants in turn ----------------------------------

    def held(self, tenant: str) -> int:
        """Workers ``tenant`` holds right now."""
        return self._held.get(tenant, 0)

    async def _acquire(self, tenant: str) -> _Worker:
        """An idle worker for ``tenant``, once it holds fewer than its share and its turn has come."""
        if self._idle and self.held(tenant) < self.limits.tenant_share and tenant not in self._waiting:
            return self._hand(tenant, self._idle.pop())
        waiter: asyncio.Future[_Worker] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(tenant, deque()).append(waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():  # handed a worker, then cancelled: give it back
                self._release(tenant, waiter.result())
            else:
                self._forget(tenant, waiter)
            raise

    def _hand(self, tenant: str, worker: _Worker) -> _Worker:
        self._held[tenant] = self.held(tenant) + 1
        return worker

    def _release(self, tenant: str, worker: _Worker | None) -> None:
        """``tenant`` is done with ``worker`` (None: it was killed), so the next tenant in turn may have one."""
        left = self.held(tenant) - 1
        if left > 0:
            self._held[tenant] = left
        else:
            self._held.pop(tenant, None)
        if worker is not None:
            self._idle.append(worker)
        self._dispatch()

    def _dispatch(self) -> None:
        """Hands idle workers to waiting calls, one per tenant in turn, skipping tenants at their share."""
        while self._idle and self._waiting:
            for tenant in self._waiting:
                if self.held(tenant) < self.limits.tenant_share:
                    break
            else:
                return  # every waiting tenant holds its share: the idle workers wait for other tenants
            queue = self._waiting[tenant]
            waiter = queue.popleft()
            if queue:
                self._waiting.move_to_end(tenant)  # its next call waits for the other tenants' turns
            else:
                del self._waiting[tenant]
            if not waiter.done():  # a cancelled waiter (its deadline passed) is skipped
                waiter.set_result(self._hand(tenant, self._idle.pop()))

    def _forget(self, tenant: str, waiter: asyncio.Future[_Worker]) -> None:
        queue = self._waiting.get(tenant)
        if queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(waiter)
        if not queue:
            del self._waiting[tenant]

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._all.discard(worker)
        self.replaced += 1
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._spawn())
        self._spawning.add(task)
        task.add_done_callback(self._spawned)

    def _spawned(self, task: asyncio.Task[None]) -> None:
        self._spawning.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not start a tool worker: %s", task.exception())

    async def run(self, module: str, name: str, kwargs: dict[str, Any], ctx: RunContext, timeout_s: float) -> str:
        """Runs ``module.name(**kwargs)`` in a worker, within ``timeout_s`` (waiting for a worker included)."""
        if not self._all and not self._spawning:
            await self.start()
        frame = encode(
            {
                "module": module,
                "name": name,
                "kwargs": kwargs,
                "context": {
                    "tenant": ctx.tenant,
                    "session_id": ctx.session_id,
                    "run_id": ctx.run_id,
                    "scope": ctx.scope.SerializeToString().hex(),
                    "deadline": ctx.deadline,
                },
                "cpu_s": timeout_s,
                "max_chars": self.limits.max_result_chars,
            }
        )
        max_bytes = 6 * self.limits.max_result_chars + _REPLY_SLACK  # JSON escapes a character in 6 bytes at most
        async with asyncio.timeout(timeout_s):
            worker = await self._acquire(ctx.tenant)
            try:
                reply = await worker.call(frame, max_bytes)
            except BaseException as error:
                # Overran (timeout or the run's cancellation), died, or answered too much: its state is
                # unknown, so it is killed and replaced rather than reused.
                self._replace(worker)
                self._release(ctx.tenant, None)
                if isinstance(error, asyncio.IncompleteReadError | ConnectionError | BrokenPipeError):
                    raise ToolWorkerError("the tool's worker died (CPU or memory limit, or a crash)") from None
                raise
        self._release(ctx.tenant, worker)
        if "ok" in reply:
            return str(reply["ok"])
        raise ToolFailed(str(reply.get("error", "Error")), str(reply.get("message", "")))
