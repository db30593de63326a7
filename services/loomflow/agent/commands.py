"""The ``loomflow token`` and ``loomflow demo`` subcommands."""

from __future__ import annotations

import argparse
import asyncio

from loomflow.kernel import config
from loomflow.kernel.auth import AuthSettings, Role, mint_token


def _token(args: argparse.Namespace) -> int:
    settings = config.load("auth", AuthSettings, args)
    try:
        print(mint_token(settings, args.subject, Role(args.role), ttl_seconds=args.ttl))
    except ValueError as error:  # no signing key configured
        raise config.ConfigError(str(error)) from None
    return 0


def add_token(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "token",
        help="mint a bearer token (JWT) for development",
        description=(
            "Mint a JWT signed with the configured key (LOOMFLOW_AUTH_JWT_SECRET for HS256, or "
            "LOOMFLOW_AUTH_JWT_PRIVATE_KEY_FILE for RS256/EdDSA). A user token's subject is the user_id "
            "it may act for; service tokens are what the Agent presents to the other services; operator "
            "tokens administer policies, limits and cross-tenant reads."
        ),
    )
    parser.add_argument("subject", help="the `sub` claim: a user id, or a service or operator name")
    parser.add_argument("--role", choices=[r.value for r in Role], default=Role.USER.value, help="default: user")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until the token expires (default: 3600)")
    config.add_arguments(parser, "auth", AuthSettings)
    parser.set_defaults(handler=_token)


def _demo(args: argparse.Namespace) -> int:
    from loomflow.agent.demo import run_demo

    return asyncio.run(run_demo(keep=args.keep))


def add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the five services in one process and a conversation for two tenants",
        description=(
            "Starts all five services in one process on embedded defaults in a temporary folder, in "
            "secure mode with a freshly generated secret, then runs a conversation for alice and bob "
            "through the Python client: memory recall, a tool call needing approval, a budget stop and "
            "the audit verification."
        ),
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder afterwards")
    parser.set_defaults(handler=_demo)
