"""``loomflow token``: mints a bearer token (JWT) for development, with the configured key or devmode's."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from loomflow.kernel import config, devmode
from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.kernel.settings import ServerSettings


def _token(args: argparse.Namespace) -> int:
    settings = config.load("auth", AuthSettings, args)
    if not (settings.jwt_secret or settings.jwt_private_key_file):
        settings = _development_signing(settings, args.data_dir)
    try:
        print(mint_token(settings, args.subject, Role(args.role), ttl_seconds=args.ttl))
    except ValueError as error:  # an unusable signing key
        raise config.ConfigError(str(error)) from None
    return 0


def _development_signing(settings: AuthSettings, data_dir: str) -> AuthSettings:
    """Signs with the secret `loomflow serve --insecure` keeps in the data folder (devmode)."""
    secret = devmode.read_dev_secret(data_dir)
    if secret is None:
        raise config.ConfigError(
            "no signing key: set LOOMFLOW_AUTH_JWT_SECRET (--auth-jwt-secret) or LOOMFLOW_AUTH_JWT_PRIVATE_KEY_FILE, "
            f"or start `make serve` (loomflow serve --insecure) first: it keeps a development secret in "
            f"{devmode.dev_secret_path(data_dir)}"
        )
    print(
        f"loomflow token: signed with the development secret {devmode.dev_secret_path(data_dir)} "
        "(accepted by `loomflow serve --insecure` on that folder only)",
        file=sys.stderr,
    )
    return dataclasses.replace(settings, jwt_secret=secret)


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("LOOMFLOW_DATA_DIR", ServerSettings.data_dir),
        help="without a configured key: sign with the development secret `loomflow serve --insecure` keeps here "
        "[env LOOMFLOW_DATA_DIR, default %(default)r]",
    )
    config.add_arguments(parser, "auth", AuthSettings)
    parser.set_defaults(handler=_token)
