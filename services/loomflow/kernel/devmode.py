"""What insecure development mode keeps in the data folder, so its tools work together.

``loomflow serve --insecure`` (what ``make serve`` runs) creates a random HS256
secret in ``<data-dir>/dev-jwt-secret`` unless a token key is configured, and
verifies the tokens callers send with it: ``loomflow token alice`` (which reads
the same file) then mints a token the server accepts, bound to alice as in
production. A call without any authorization header still acts as an operator.
The file is for local development only: a production server never reads it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import sys
from pathlib import Path

from loomflow.kernel.auth import AuthSettings

log = logging.getLogger("loomflow.server")

DEV_SECRET_FILE = "dev-jwt-secret"


def has_token_key(auth: AuthSettings) -> bool:
    return bool(auth.jwt_secret or auth.jwt_public_key_file)


def dev_secret_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / DEV_SECRET_FILE


def read_dev_secret(data_dir: str | Path) -> str | None:
    try:
        return dev_secret_path(data_dir).read_text().strip() or None
    except OSError:
        return None


def ensure_dev_secret(data_dir: str | Path) -> str | None:
    """The data folder's development secret, created (mode 0600) on first use; None if the folder is unwritable."""
    path = dev_secret_path(data_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # kept from an earlier run, or another process of this suite made it first
        return read_dev_secret(data_dir)
    except OSError as exc:
        log.warning("insecure mode: cannot keep a development token secret in %s (%s); tokens are ignored", path, exc)
        return None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return read_dev_secret(data_dir)


def with_dev_secret(auth: AuthSettings, data_dir: str | Path) -> AuthSettings:
    """``auth`` verifying tokens with the data folder's development secret, unless a key is configured."""
    if has_token_key(auth):
        return auth
    secret = ensure_dev_secret(data_dir)
    return dataclasses.replace(auth, jwt_secret=secret) if secret else auth


def program() -> str:
    """How a reader types the ``loomflow`` command here: the venv's script (relative when below
    the working folder, as ``.venv/bin/loomflow``), else the bare name."""
    script = Path(sys.prefix) / "bin" / "loomflow"
    if not script.exists():
        return "loomflow"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)
