"""``loomflow usage``: tokens, cost and runs per tenant over a time range, as JSON or CSV.

Reads ``AuditService/Usage`` (every tenant with an operator token, or one ``--user-id``), pages
through it, and prices each model's tokens with the Budget's price table (the built-in one, or
``--price-file`` / ``LOOMFLOW_BUDGET_PRICE_FILE`` as the Budget service reads it), so the cost is
what the Budget would charge for those tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
from datetime import UTC, datetime
from typing import IO, Any

import grpc

from loomflow.budget.models import Usage
from loomflow.budget.pricing import PriceTable
from loomflow.cli.connection import add_connection_arguments, open_channel
from loomflow.kernel.config import ConfigError
from loomflow.v1 import audit_pb2, audit_pb2_grpc, tenancy_pb2

COLUMNS = (
    "user_id",
    "anonymous",
    "runs",
    "model_calls",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost_usd",
    "shredded_model_calls",
)


def parse_time(text: str, flag: str) -> datetime:
    """An ISO 8601 date or date-time; a date or a time without zone is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected an ISO 8601 date or date-time, e.g. 2026-12-01") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _usd(micros: int) -> str:
    return f"{micros / 1e6:.6f}"


def rows(tenants: list[audit_pb2.TenantUsage], prices: PriceTable) -> list[dict[str, Any]]:
    """One report row per tenant (JSON also keeps the per-model breakdown)."""
    report: list[dict[str, Any]] = []
    for tenant in tenants:
        models: list[dict[str, Any]] = []
        total_micros = 0
        for m in tenant.models:
            usage = Usage(
                input_tokens=m.input_tokens, output_tokens=m.output_tokens, cached_input_tokens=m.cached_input_tokens
            )
            cost_micros = prices.resolve(m.model).cost_micros(usage)
            total_micros += cost_micros
            models.append(
                {
                    "model": m.model,
                    "model_calls": m.model_calls,
                    "input_tokens": m.input_tokens,
                    "output_tokens": m.output_tokens,
                    "cached_input_tokens": m.cached_input_tokens,
                    "cost_usd": _usd(cost_micros),
                }
            )
        anonymous = tenant.scope.WhichOneof("kind") == "anonymous"
        report.append(
            {
                "user_id": "" if anonymous else tenant.scope.user_id,
                "anonymous": anonymous,
                "runs": tenant.runs,
                "model_calls": sum(m.model_calls for m in tenant.models),
                "input_tokens": sum(m.input_tokens for m in tenant.models),
                "output_tokens": sum(m.output_tokens for m in tenant.models),
                "cached_input_tokens": sum(m.cached_input_tokens for m in tenant.models),
                "cost_usd": _usd(total_micros),
                "shredded_model_calls": tenant.shredded_model_calls,
                "models": models,
            }
        )
    return report


def write(report: list[dict[str, Any]], fmt: str, out: IO[str]) -> None:
    if fmt == "json":
        json.dump(report, out, indent=2)
        out.write("\n")
        return
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(report)


async def fetch(args: argparse.Namespace, request: audit_pb2.UsageRequest) -> list[audit_pb2.TenantUsage]:
    """Every page of the report, over the connection the flags describe."""
    metadata = (("authorization", f"Bearer {args.token}"),) if args.token else ()
    found: list[audit_pb2.TenantUsage] = []
    async with open_channel(args) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        while True:
            page = await stub.Usage(request, metadata=metadata)
            found.extend(page.tenants)
            if not page.next_page_token:
                return found
            request.page_token = page.next_page_token


def _run(args: argparse.Namespace) -> int:
    start, end = parse_time(args.start, "--from"), parse_time(args.end, "--to")
    if end <= start:
        raise ConfigError("--to must be after --from")
    scope = tenancy_pb2.UserScope(user_id=args.user_id) if args.user_id else None
    if scope is None:
        scope = tenancy_pb2.UserScope(all_tenants=tenancy_pb2.AllTenants())
    request = audit_pb2.UsageRequest(scope=scope, page_size=1000)
    request.from_time.FromDatetime(start)
    request.to_time.FromDatetime(end)
    prices = PriceTable.load(args.price_file)
    try:
        tenants = asyncio.run(fetch(args, request))
    except grpc.aio.AioRpcError as exc:
        print(f"loomflow usage: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    write(rows(tenants, prices), args.format, sys.stdout)
    return 0


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "usage",
        help="tokens, cost and runs per tenant over a time range (JSON or CSV)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--from", dest="start", required=True, help="start (inclusive), ISO 8601; UTC unless zoned")
    parser.add_argument("--to", dest="end", required=True, help="end (exclusive), ISO 8601; UTC unless zoned")
    parser.add_argument("--format", choices=("json", "csv"), default="json")
    parser.add_argument("--user-id", default="", help="one tenant (default: every tenant; needs an operator token)")
    add_connection_arguments(
        parser,
        "the Audit service's (or the suite's)",
        token="bearer token: an operator's, or with --user-id that user's own",
    )
    parser.add_argument(
        "--price-file",
        default=os.environ.get("LOOMFLOW_BUDGET_PRICE_FILE", ""),
        help="the Budget's price file, if it has one [env LOOMFLOW_BUDGET_PRICE_FILE]",
    )
    parser.set_defaults(handler=_run)
