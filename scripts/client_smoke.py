"""The client-only distribution on its own: run in a venv holding loomflow-client and nothing else.

    python scripts/client_smoke.py PATH/TO/loomflow      # a loomflow CLI from another venv

Checks that no server dependency and no top-level ``buf`` package came with the client and that
the messages still carry their validation rules; then starts ``loomflow serve --insecure`` (all
services, embedded defaults, a temp data dir, a free port) with the given CLI and makes real
calls through it: a memory round trip, NOT_FOUND for another tenant's record, and a validation
failure with its field violation. .ci/run runs it with the development venv's CLI.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile

import grpc

SERVER_ONLY = ("loomflow.kernel", "loomflow.cli", "protovalidate", "asyncpg", "redis", "chromadb", "numpy", "buf")


def installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent package is absent
        return False


async def calls(address: str) -> None:
    from loomflow.client import InvalidArgument, MemoryClient, NotFound

    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=60)
    async with MemoryClient(address) as memory:
        episode = await memory.remember("client-only smoke", "ok", user_id="smoke-alice")
        hits = await memory.recall("client-only smoke", user_id="smoke-alice", limit=1)
        assert [h.episode.id for h in hits] == [episode.id], hits
        try:
            await memory.get_episode(episode.id, user_id="smoke-bob")
        except NotFound:
            pass
        else:
            raise AssertionError("another tenant's episode was returned")
        refused: InvalidArgument | None = None
        try:
            await memory.recall("", user_id="smoke-alice")
        except InvalidArgument as exc:
            refused = exc
        assert refused is not None, "an empty query passed validation"
        assert "query" in refused.fields, refused.field_violations


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def main(cli: str) -> int:
    present = [name for name in SERVER_ONLY if installed(name)]
    assert not present, f"the client-only venv holds server packages: {present}"
    from loomflow.v1 import memory_pb2

    options = memory_pb2.RecallRequest.DESCRIPTOR.fields_by_name["query"].GetOptions()
    assert options.ListFields(), "the generated messages lost their buf.validate rules"

    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "LOOMFLOW_DATA_DIR": data, "LOOMFLOW_METRICS_PORT": "0", "LOOMFLOW_PORT": str(port)}
        server = subprocess.Popen([cli, "serve", "--insecure"], env=env)
        try:
            asyncio.run(calls(f"127.0.0.1:{port}"))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print("client-only smoke: ok (no server packages; remember/recall, NOT_FOUND, INVALID_ARGUMENT)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
