"""``loomflow forget-user`` and ``loomflow export-user``: ForgetUser and ExportUser from a terminal.

``forget-user`` prints the erasure as JSON and exits 0 when it is done, 3 while a service is still
being retried (run it again with ``--erasure-id`` to follow it); any refusal exits 1 with its message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToJson

from loomflow.cli.connection import add_connection_arguments, open_channel
from loomflow.client import Agent
from loomflow.client.errors import LoomflowError
from loomflow.v1 import agent_pb2

PENDING_EXIT = 3


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user_id", help="the user to erase or export")
    add_connection_arguments(
        parser, "the Agent's", token="bearer token: an operator's (for export-user also the user's own)"
    )


@contextlib.asynccontextmanager
async def _agent(args: argparse.Namespace) -> AsyncIterator[Agent]:
    async with open_channel(args) as channel, Agent(channel, token=args.token or None) as agent:
        yield agent


async def _forget(args: argparse.Namespace) -> int:
    async with _agent(args) as agent:
        if args.erasure_id:
            erasure = await agent.get_erasure(args.erasure_id, args.user_id)
        else:
            erasure = await agent.forget_user(args.user_id, request_id=args.request_id)
    print(MessageToJson(erasure, preserving_proto_field_name=True, indent=2))
    return 0 if erasure.state == agent_pb2.ERASURE_STATE_DONE else PENDING_EXIT


async def _export(args: argparse.Namespace) -> int:
    async with _agent(args) as agent:
        archive = await agent.export_user(args.user_id)
    await asyncio.to_thread(Path(args.output).write_bytes, archive)
    print(
        f"{args.output}: {len(archive)} bytes (tar.gz: manifest.json and one JSONL file per service)", file=sys.stderr
    )
    return 0


def _running(command: Callable[[argparse.Namespace], Coroutine[Any, Any, int]]) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(command(args))
        except LoomflowError as error:
            print(f"loomflow: {error}", file=sys.stderr)
            return 1

    return handler


def add_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    forget = sub.add_parser(
        "forget-user",
        help="erase a user from every service (ForgetUser; operator token)",
        description="Erase a user everywhere (docs/erasure.md). Exit 0: done; 3: pending, retried by the server.",
    )
    _connection(forget)
    forget.add_argument("--request-id", default="", help="idempotency key: the same key answers the same erasure")
    forget.add_argument("--erasure-id", default="", help="only show this erasure's progress (GetErasure)")
    forget.set_defaults(handler=_running(_forget))
    export = sub.add_parser(
        "export-user",
        help="write everything the suite stores about a user to a tar.gz (ExportUser)",
        description="Export a user's data (docs/erasure.md): an operator token, or the user's own.",
    )
    _connection(export)
    export.add_argument("-o", "--output", default="export.tar.gz", help="archive to write (default %(default)s)")
    export.set_defaults(handler=_running(_export))
