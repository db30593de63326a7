"""The tool worker process: runs synchronous tools away from the Agent's event loop.

``python -m loomflow.agent.tools.worker`` reads requests from stdin and writes
replies to stdout, one frame each: a 4-byte big-endian length, then JSON.

    request  {"module", "name", "kwargs", "context": {...}, "cpu_s", "max_chars"}  or  {"preload": [modules]}
    reply    {"ok": "<text>"}  or  {"error": "<exception type>", "message": "..."}

The process limits itself (``resource``): its address space (``RLIMIT_AS``, so
a tool that allocates without bound gets ``MemoryError``) and, before each
call, its CPU time (``RLIMIT_CPU``: the kernel ends the process with SIGXCPU
when a call burns more). Once its tools' modules are imported it lowers its own
CPU priority (``LOOMFLOW_TOOL_WORKER_NICE``), so a tool spinning until its
deadline gets the CPU the Agent's event loop leaves, not the other way round.
The Agent also kills it at the call's deadline (:mod:`loomflow.agent.tools.workers`);
either way a fresh worker replaces it.
A tool's own ``print`` goes to stderr, so it cannot corrupt the replies.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import resource
import struct
import sys
from typing import Any, BinaryIO

from loomflow.agent.context import RunContext, bound_run_context
from loomflow.agent.tools.registry import Tool
from loomflow.v1 import tenancy_pb2

HEADER = struct.Struct(">I")
MEMORY_ENV = "LOOMFLOW_TOOL_WORKER_MEMORY_BYTES"
NICE_ENV = "LOOMFLOW_TOOL_WORKER_NICE"
TRUNCATED = " …(truncated)"

_handlers: dict[tuple[str, str], Any] = {}


def read_frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    data = stream.read(size)
    return data if len(data) == size else None


def encode(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, separators=(",", ":"), default=str).encode()
    return HEADER.pack(len(data)) + data


def handler_of(module: str, name: str) -> Any:
    """The function behind ``module.name`` (a :class:`Tool` or the plain function), imported once."""
    key = (module, name)
    found = _handlers.get(key)
    if found is None:
        target: Any = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
        found = _handlers[key] = target.handler if isinstance(target, Tool) else target
    return found


def context_of(raw: dict[str, Any]) -> RunContext:
    scope = tenancy_pb2.UserScope.FromString(bytes.fromhex(raw["scope"]))
    return RunContext(raw["tenant"], raw["session_id"], raw["run_id"], scope, float(raw["deadline"]))


def limit_cpu(seconds: float) -> None:
    """Lets this call burn ``seconds`` of CPU beyond what the process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(used + seconds)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def run(request: dict[str, Any]) -> dict[str, Any]:
    if "preload" in request:  # a new worker imports the tools' modules before it counts as ready
        try:
            for module in request["preload"]:
                importlib.import_module(module)
        except Exception as error:  # noqa: BLE001  # reported; the call that needs the module reports it again
            return {"error": type(error).__name__, "message": str(error)[:2000]}
        finally:
            # Tools run below the Agent's priority; the imports above did not, so a busy machine does not
            # hold up a replacement worker. Lowering is always allowed, and the worker cannot raise it back.
            os.nice(max(0, int(os.environ.get(NICE_ENV, "0"))))
        return {"ok": ""}
    try:
        handler = handler_of(request["module"], request["name"])
        limit_cpu(float(request["cpu_s"]))
        with bound_run_context(context_of(request["context"])):
            result = handler(**request["kwargs"])
        text = result if isinstance(result, str) else json.dumps(result, default=str, sort_keys=True)
    except Exception as error:  # noqa: BLE001  # the tool's failure is reported to the Agent, the worker lives on
        return {"error": type(error).__name__, "message": str(error)[:2000]}
    finally:
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
    limit = int(request["max_chars"])
    if len(text) > limit:
        text = text[:limit] + TRUNCATED
    return {"ok": text}


def main() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU would otherwise dump a core per overrun
    memory = int(os.environ.get(MEMORY_ENV, "0"))
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    replies = sys.stdout.buffer
    sys.stdout = sys.stderr  # a tool's print() must not interleave with the frames
    requests = sys.stdin.buffer
    while True:
        frame = read_frame(requests)
        if frame is None:
            return  # the Agent closed the pipe: it is stopping or replacing this worker
        replies.write(encode(run(json.loads(frame))))
        replies.flush()


if __name__ == "__main__":
    main()
