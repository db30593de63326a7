"""How the operator commands reach a server: address, token and TLS, one set of flags for all of them.

A deployment that follows docs/deploy.md serves TLS and, on Memory, Budget, Policy and Audit, mTLS:
``--tls`` trusts the system roots, ``--tls-ca`` a private CA, ``--tls-cert``/``--tls-key`` present a
client certificate, ``--tls-server-name`` checks the server's certificate for a name other than the
address's host (a port-forward to 127.0.0.1 of a pod whose certificate names its service). Each flag
has an environment variable, so a shell set up once reaches every command.
"""

from __future__ import annotations

import argparse
import os

import grpc

from loomflow.client import tls_credentials
from loomflow.kernel.config import ConfigError

TLS_FILE_FLAGS = (
    ("--tls-ca", "PEM CA bundle to trust instead of the system roots"),
    ("--tls-cert", "PEM client certificate, for servers that require mTLS"),
    ("--tls-key", "PEM private key of --tls-cert"),
    ("--tls-server-name", "name the server's certificate must carry, when not the address's host"),
)
"""The TLS flags that take a value, each with its LOOMFLOW_CLI_* variable (--tls-ca: LOOMFLOW_CLI_TLS_CA)."""


def add_connection_arguments(parser: argparse.ArgumentParser, what: str, token: str = "bearer token") -> None:
    """``--addr``, ``--token`` and the TLS flags; ``what`` names the service the address is of, ``token``
    says whose token the command needs."""
    parser.add_argument(
        "--addr",
        default=os.environ.get("LOOMFLOW_ADDR", "127.0.0.1:50051"),
        help=f"{what} host:port [env LOOMFLOW_ADDR, default %(default)s]",
    )
    parser.add_argument("--token", default=os.environ.get("LOOMFLOW_TOKEN", ""), help=f"{token} [env LOOMFLOW_TOKEN]")
    parser.add_argument(
        "--tls",
        action="store_true",
        default=os.environ.get("LOOMFLOW_CLI_TLS", "").lower() in ("1", "true", "yes"),
        help="connect with TLS, trusting the system roots (implied by --tls-ca or --tls-cert) [env LOOMFLOW_CLI_TLS]",
    )
    for flag, meaning in TLS_FILE_FLAGS:
        variable = "LOOMFLOW_CLI_" + flag.removeprefix("--").replace("-", "_").upper()
        parser.add_argument(flag, default=os.environ.get(variable, ""), help=f"{meaning} [env {variable}]")


def channel_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """The TLS credentials the flags ask for, or None for plaintext."""
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together: a client certificate needs its private key")
    if not (args.tls or args.tls_ca or args.tls_cert):
        return None
    try:
        return tls_credentials(args.tls_ca or None, args.tls_cert or None, args.tls_key or None)
    except OSError as exc:
        raise ConfigError(f"cannot read a TLS file: {exc}") from exc


def open_channel(args: argparse.Namespace) -> grpc.aio.Channel:
    """A channel to ``--addr`` as the flags say: plaintext, or TLS with their CA, client pair and name."""
    credentials = channel_credentials(args)
    if credentials is None:
        if args.tls_server_name:
            raise ConfigError("--tls-server-name needs TLS (--tls, --tls-ca or --tls-cert)")
        return grpc.aio.insecure_channel(args.addr)
    options = [("grpc.ssl_target_name_override", args.tls_server_name)] if args.tls_server_name else None
    return grpc.aio.secure_channel(args.addr, credentials, options=options)
