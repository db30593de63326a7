"""Bad keys and bad configuration refuse to start, with an error that names the setting;
insecure mode alone substitutes public development keys, loudly."""

from __future__ import annotations

import base64
import logging
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from loomflow import suite
from loomflow.audit.keys import dev_key, load_keys, parse_payload_key, parse_signing_key
from loomflow.kernel.config import ConfigError
from loomflow.testing.processes import free_port, source_env
from loomflow.testing.suite import TEST_JWT_SECRET
from tests.audit.conftest import KeyTexts


def build(tmp_path: Path, audit: dict[str, object], insecure: bool = False) -> None:
    suite.build_server(
        env={},
        overrides={
            "": {"services": "audit", "data_dir": str(tmp_path), "insecure": insecure, "port": 0, "metrics_port": 0},
            "auth": {"jwt_secret": TEST_JWT_SECRET},
            "audit": audit,
        },
    )


def _pem(key: object) -> str:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


HMAC = "LOOMFLOW_AUDIT_HMAC_KEY (--audit-hmac-key)"
SIGNING = "LOOMFLOW_AUDIT_SIGNING_KEY (--audit-signing-key)"
PAYLOAD = "LOOMFLOW_AUDIT_PAYLOAD_KEY (--audit-payload-key)"

BAD_KEYS = {
    "empty hmac key": ("hmac_key", "", f"{HMAC} is empty"),
    "short hmac key": ("hmac_key", secrets.token_hex(8), f"{HMAC} is too short"),
    "placeholder hmac key": ("hmac_key", "changeme-" + secrets.token_hex(16), "well-known placeholder"),
    "patterned hmac key": ("hmac_key", "ab" * 32, f"{HMAC} is not random"),
    "development hmac key": ("hmac_key", dev_key("hmac").hex(), "well-known placeholder or development key"),
    "empty signing key": ("signing_key", "", f"{SIGNING} is empty"),
    "malformed signing key": ("signing_key", "not-a-key", f"{SIGNING} must be an Ed25519 private key"),
    "zero signing seed": ("signing_key", "00" * 32, f"{SIGNING} is not random"),
    "rsa signing key": ("signing_key", _pem(generate_private_key(65537, 2048)), "the PEM key is not an Ed25519 key"),
    "empty payload key": ("payload_key", "", f"{PAYLOAD} is empty"),
    "short payload key": ("payload_key", secrets.token_hex(16), f"{PAYLOAD} must be 32 random bytes"),
    "development payload key": ("payload_key", dev_key("payload").hex(), f"{PAYLOAD} is a public development key"),
}


@pytest.mark.parametrize("case", list(BAD_KEYS))
def test_bad_keys_refuse_to_start(tmp_path: Path, key_texts: KeyTexts, case: str) -> None:
    name, value, message = BAD_KEYS[case]
    with pytest.raises(ConfigError, match=re.escape(message)):
        build(tmp_path, {**key_texts.settings(), name: value})


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("dsn", "memory://", "unsupported"),
        ("dsn", "sqlite:///tmp/audit.db", "unsupported"),
        ("max_batch", 0, "LOOMFLOW_AUDIT_MAX_BATCH"),
        ("checkpoint_interval", -1.0, "LOOMFLOW_AUDIT_CHECKPOINT_INTERVAL"),
    ],
)
def test_bad_settings_refuse_to_start(
    tmp_path: Path, key_texts: KeyTexts, setting: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build(tmp_path, {**key_texts.settings(), setting: value})


async def test_an_unreachable_postgres_refuses_to_start(tmp_path: Path, key_texts: KeyTexts) -> None:
    server = suite.build_server(
        env={},
        overrides={
            "": {"services": "audit", "data_dir": str(tmp_path), "port": 0, "metrics_port": 0, "tracing": False},
            "auth": {"jwt_secret": TEST_JWT_SECRET},
            "audit": {**key_texts.settings(), "dsn": f"postgres://nobody@127.0.0.1:{free_port()}/none"},
        },
    )
    with pytest.raises(ConfigError, match="audit: cannot connect"):
        await server.start()


def test_accepted_key_forms(key_texts: KeyTexts) -> None:
    seed = secrets.token_bytes(32)
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for form in (seed.hex(), base64.b64encode(seed).decode(), base64.urlsafe_b64encode(seed).decode(), _pem(private)):
        loaded = parse_signing_key(form).public_key()
        assert loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == public, form
    raw = secrets.token_bytes(32)
    assert parse_payload_key(raw.hex()) == parse_payload_key(base64.b64encode(raw).decode()) == raw


def test_insecure_mode_uses_development_keys_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="loomflow.audit"):
        keys = load_keys("", "", "", insecure=True)
        build(tmp_path, {}, insecure=True)
    assert keys.development == ("hmac", "signing", "payload")
    assert keys.payload_key == dev_key("payload")
    assert any("public development keys" in r.getMessage() for r in caplog.records)


def test_insecure_mode_still_refuses_malformed_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{PAYLOAD} must be 32 random bytes")):
        build(tmp_path, {"payload_key": "nope"}, insecure=True)


def test_serve_exits_with_a_clear_error_when_keys_are_missing(tmp_path: Path) -> None:
    env = {
        **source_env(),
        "LOOMFLOW_SERVICES": "audit",
        "LOOMFLOW_DATA_DIR": str(tmp_path),
        "LOOMFLOW_PORT": str(free_port()),
        "LOOMFLOW_METRICS_PORT": "0",
        "LOOMFLOW_AUTH_JWT_SECRET": TEST_JWT_SECRET,
        "LOOMFLOW_AUDIT_HMAC_KEY": "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "loomflow.cli", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert f"{HMAC} is empty" in done.stderr
