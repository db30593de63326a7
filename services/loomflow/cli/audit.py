"""``loomflow audit …``: offline tools for auditors and operators.

``loomflow audit verify <path-or-dsn> --public-key KEY [--hmac-key KEY] [--checkpoint FILE]``
reads a log directly (a file log folder, its ``entries.jsonl``, a ``file://``
DSN or a ``postgres://`` DSN), never writes to it, and checks every chain (or
one user's) against a checkpoint signed by a *trusted* key: ``--public-key``
(hex, base64, PEM, or a file holding one) or a pinned
``--public-key-fingerprint``. A checkpoint carries its own public key, and
anyone who can edit the log can sign one with their own key, so the embedded
key is trusted only with ``--trust-embedded-key``, loudly. Exit status:
0 intact, 1 tampered, 2 unusable input (no trusted key, bad key, unreadable
checkpoint, no log).

``loomflow audit public-key [--fingerprint]`` prints the public half of the
configured signing key (or its fingerprint), for an auditor to pin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loomflow.audit import checkpoint as checkpoints
from loomflow.audit.chain import key_fingerprint
from loomflow.audit.keys import DEV_HMAC_KEY_TEXT, dev_key, parse_hmac_key, parse_public_key, parse_signing_key
from loomflow.audit.models import ChainReport, Checkpoint
from loomflow.audit.sink import open_sink
from loomflow.kernel.config import ConfigError
from loomflow.kernel.tenancy import display_tenant

EXIT_OK, EXIT_TAMPERED, EXIT_UNUSABLE = 0, 1, 2


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("audit", help="audit log tools (offline verification)", description=__doc__)
    commands = parser.add_subparsers(dest="audit_command", required=True)

    verify = commands.add_parser(
        "verify",
        help="verify an audit log offline",
        description="Verify every chain of an audit log (or one user's) and, against a signed checkpoint, "
        "detect truncation. Reads the log directly; never writes to it.",
    )
    verify.add_argument("source", help="log folder, its entries.jsonl, file:///folder, or postgres://…")
    verify.add_argument(
        "--hmac-key",
        default=None,
        help="the chain key (default: $LOOMFLOW_AUDIT_HMAC_KEY; prefer the variable, flags show in `ps`)",
    )
    verify.add_argument(
        "--insecure-dev-key", action="store_true", help="use the public development key of insecure mode"
    )
    verify.add_argument(
        "--checkpoint",
        type=Path,
        help="a checkpoint kept out of band (JSON, e.g. a saved GetCheckpoint response); "
        "default: the newest one stored in the log",
    )
    trust = verify.add_mutually_exclusive_group()
    trust.add_argument(
        "--public-key",
        help="the trusted Ed25519 public key checkpoints must be signed by: hex, base64, PEM, or a file holding one "
        "(`loomflow audit public-key` on the service side)",
    )
    trust.add_argument(
        "--public-key-fingerprint",
        help="the pinned SHA-256 fingerprint (hex) of the trusted public key "
        "(`loomflow audit public-key --fingerprint`)",
    )
    trust.add_argument(
        "--trust-embedded-key",
        action="store_true",
        help="UNSAFE: accept a checkpoint signed by the key it carries; whoever can edit the log can forge one",
    )
    verify.add_argument("--user-id", help="verify only this user's chain")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--verbose", action="store_true", help="list intact chains too")
    verify.set_defaults(handler=_verify)

    public = commands.add_parser(
        "public-key", help="print the public key of LOOMFLOW_AUDIT_SIGNING_KEY (hex), for auditors to pin"
    )
    public.add_argument("--fingerprint", action="store_true", help="print the key's SHA-256 fingerprint instead")
    public.set_defaults(handler=_public_key)


EMBEDDED_KEY_WARNING = (
    "WARNING: --trust-embedded-key: the checkpoint is checked only against the public key it carries. Anyone who "
    "can edit the log can cut a chain and sign a new checkpoint with their own key, and this check passes. "
    "Pin the service's key with --public-key or --public-key-fingerprint."
)


def _public_key(args: argparse.Namespace) -> int:
    signing = parse_signing_key(os.environ.get("LOOMFLOW_AUDIT_SIGNING_KEY", ""), strict=False)
    public = checkpoints.public_bytes(signing)
    print(checkpoints.public_key_fingerprint(public) if args.fingerprint else public.hex())
    return EXIT_OK


def _read_key_text(value: str) -> str:
    """``value`` itself, or the text of the file it names."""
    path = Path(value)
    try:
        return path.read_text() if path.is_file() else value
    except OSError as exc:
        raise ConfigError(f"cannot read public key file {path}: {exc}") from None


def _trusted_key(args: argparse.Namespace) -> bytes | None:
    """The public key checkpoints must be signed by; None when it is pinned by fingerprint or trust is waived."""
    if args.public_key:
        return checkpoints.public_bytes(parse_public_key(_read_key_text(args.public_key)))
    if args.public_key_fingerprint or args.trust_embedded_key:
        return None
    if args.insecure_dev_key:  # a development log is signed with the public development key
        return checkpoints.public_bytes(Ed25519PrivateKey.from_private_bytes(dev_key("signing")))
    raise ConfigError(
        "a trusted public key is required: pass --public-key KEY (from `loomflow audit public-key` on the service "
        "side) or --public-key-fingerprint HEX; --trust-embedded-key accepts any signer (unsafe)"
    )


def _pinned_problem(checkpoint: Checkpoint, fingerprint: str) -> str:
    if checkpoints.public_key_fingerprint(checkpoint.public_key) != fingerprint.strip().lower():
        return "checkpoint is signed by a key whose fingerprint is not the pinned one"
    return ""


def _hmac_key(args: argparse.Namespace) -> bytes:
    if args.insecure_dev_key:
        return DEV_HMAC_KEY_TEXT.encode()
    text = args.hmac_key if args.hmac_key is not None else os.environ.get("LOOMFLOW_AUDIT_HMAC_KEY", "")
    return parse_hmac_key(text, strict=False)


def _load_checkpoint(path: Path) -> Checkpoint:
    try:
        return checkpoints.from_json(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read checkpoint {path}: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


async def _run(args: argparse.Namespace, key: bytes, trusted: bytes | None) -> dict[str, Any]:
    """Opens the log read-only, checks the key's fingerprint, picks the checkpoint, verifies."""
    sink = open_sink(args.source, readonly=True)
    await sink.open()
    try:
        meta = await sink.init_meta({})
        expected = meta.get("hmac_key_fingerprint")
        if expected and expected != key_fingerprint(key):
            raise ConfigError(
                f"the HMAC key is not the one this log was written with (fingerprint {key_fingerprint(key)}, "
                f"the log records {expected})"
            )
        checkpoint = _load_checkpoint(args.checkpoint) if args.checkpoint else await sink.latest_checkpoint()
        problem = ""
        if checkpoint is not None:
            if args.public_key_fingerprint:
                problem = _pinned_problem(checkpoint, args.public_key_fingerprint)
            problem = problem or checkpoints.signature_problem(checkpoint, trusted)
        reports, unreadable = await sink.verify(key, None if problem else checkpoint, args.user_id)
    finally:
        await sink.close()
    return {
        "source": sink.description,
        "checkpoint": checkpoint,
        "checkpoint_source": str(args.checkpoint) if args.checkpoint else "the log's newest",
        "checkpoint_error": problem,
        "trusted_key": not args.trust_embedded_key,
        "reports": reports,
        "unreadable": unreadable,
    }


def _who(report: ChainReport) -> str:
    if report.tenant is None:
        return f"chain {report.tenant_digest[:16]}…"
    return f"user {display_tenant(report.tenant)!r}"


def _print_text(result: dict[str, Any], verbose: bool) -> None:
    reports: list[ChainReport] = result["reports"]
    checkpoint: Checkpoint | None = result["checkpoint"]
    print(f"audit log {result['source']}: {len(reports)} chains, {sum(r.entries_checked for r in reports)} entries")
    if checkpoint is None:
        print("checkpoint: none (truncation of a chain's tail cannot be detected)")
    elif result["checkpoint_error"]:
        print(f"checkpoint {checkpoint.checkpoint_id}: NOT USED: {result['checkpoint_error']}")
    else:
        trust = "the trusted public key" if result["trusted_key"] else "its own embedded key (UNTRUSTED)"
        print(
            f"checkpoint {checkpoint.checkpoint_id} ({result['checkpoint_source']}, {len(checkpoint.heads)} heads): "
            f"signature valid under {trust}"
        )
    for report in reports:
        if not report.ok:
            print(f"FAIL {_who(report)}: first bad seq {report.first_bad_seq}: {report.reason}")
        elif verbose:
            print(f"ok   {_who(report)}: {report.entries_checked} entries, head {report.head.seq}")
    for record in result["unreadable"]:
        print(f"FAIL unreadable record: {record}")
    failing = sum(not r.ok for r in reports)
    if failing or result["unreadable"] or result["checkpoint_error"]:
        print(f"result: TAMPERED ({failing} of {len(reports)} chains fail)")
    else:
        print("result: OK")


def _as_json(result: dict[str, Any]) -> str:
    checkpoint: Checkpoint | None = result["checkpoint"]
    reports: list[ChainReport] = result["reports"]
    document = {
        "source": result["source"],
        "ok": all(r.ok for r in reports) and not result["unreadable"] and not result["checkpoint_error"],
        "checkpoint_id": checkpoint.checkpoint_id if checkpoint else None,
        "checkpoint_error": result["checkpoint_error"],
        "trusted_key": result["trusted_key"],
        "chains": [
            {
                "user_id": r.tenant,
                "tenant_digest": r.tenant_digest,
                "ok": r.ok,
                "entries_checked": r.entries_checked,
                "first_bad_seq": r.first_bad_seq,
                "reason": r.reason,
            }
            for r in reports
        ],
        "unreadable": result["unreadable"],
    }
    return json.dumps(document, indent=2)


def _verify(args: argparse.Namespace) -> int:
    try:
        key = _hmac_key(args)
        trusted = _trusted_key(args)
        if args.trust_embedded_key:
            print(EMBEDDED_KEY_WARNING, file=sys.stderr)
        result = asyncio.run(_run(args, key, trusted))
    except ConfigError as exc:
        print(f"loomflow audit verify: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.json:
        print(_as_json(result))
    else:
        _print_text(result, args.verbose)
    intact = all(r.ok for r in result["reports"]) and not result["unreadable"] and not result["checkpoint_error"]
    return EXIT_OK if intact else EXIT_TAMPERED
