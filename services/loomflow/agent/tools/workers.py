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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from loomflow.agent.context import RunContext
from loomflow.agent.tools.worker import HEADER, MEMORY_ENV, encode

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
        self._idle: asyncio.LifoQueue[_Worker] = asyncio.LifoQueue()
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
        self._idle.put_nowait(worker)

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
            worker = await self._idle.get()
            try:
                reply = await worker.call(frame, max_bytes)
            except BaseException as error:
                # Overran (timeout or the run's cancellation), died, or answered too much: its state is
                # unknown, so it is killed and replaced rather than reused.
                self._replace(worker)
                if isinstance(error, asyncio.IncompleteReadError | ConnectionError | BrokenPipeError):
                    raise ToolWorkerError("the tool's worker died (CPU or memory limit, or a crash)") from None
                raise
        self._idle.put_nowait(worker)
        if "ok" in reply:
            return str(reply["ok"])
        raise ToolFailed(str(reply.get("error", "Error")), str(reply.get("message", "")))
