"""A secure suite refuses to start with a weak token-signing secret (issue 19, item 5).

A weak HS256 secret (`a`, `secret`, `changeme`, …) is a guessable key that mints
operator tokens. The token verifier, `loomflow token` and the audit HMAC key share
one rule (``loomflow.kernel.weak_secrets``): at least 32 characters, no
placeholder words, not a pattern. Startup fails with one line naming the setting.
"""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest

from loomflow import cli
from loomflow.kernel.auth import AuthSettings, TokenVerifier, mint_token
from loomflow.kernel.config import ConfigError
from loomflow.testing.processes import source_env

WEAK = {
    "one letter": "a",
    "the word secret": "secret",
    "changeme": "changeme",
    "31 random hex characters": secrets.token_hex(16)[:31],
    "a placeholder padded to length": "changeme-" + secrets.token_hex(16),
    "a tutorial password": "supersecretpassword-0123456789abcdef",
    "a pattern": "abababababababababababababababababab",
}


@pytest.mark.parametrize("secret", WEAK.values(), ids=WEAK.keys())
def test_token_verifier_refuses_a_weak_hs256_secret(secret: str) -> None:
    with pytest.raises(ConfigError, match=r"LOOMFLOW_AUTH_JWT_SECRET"):
        TokenVerifier(AuthSettings(jwt_secret=secret))


@pytest.mark.parametrize("secret", ["a", "changeme"])
def test_token_command_refuses_to_mint_with_a_weak_secret(secret: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"LOOMFLOW_AUTH_JWT_SECRET"):
        mint_token(AuthSettings(jwt_secret=secret), "ops")
    assert cli.main(["token", "ops", "--role", "operator", "--auth-jwt-secret", secret]) == 2
    out, err = capsys.readouterr()
    assert not out.strip(), f"a token was printed for a weak secret: {out!r}"
    assert "LOOMFLOW_AUTH_JWT_SECRET" in err


def test_a_random_secret_of_32_hex_characters_is_accepted() -> None:
    TokenVerifier(AuthSettings(jwt_secret=secrets.token_hex(16)))


@pytest.mark.parametrize("secret", ["a", "secret", "changeme"])
def test_secure_serve_exits_2_with_one_line_naming_the_setting(secret: str) -> None:
    env = {
        **source_env(),
        "LOOMFLOW_INSECURE": "false",
        "LOOMFLOW_AUTH_JWT_SECRET": secret,
        "LOOMFLOW_SERVICES": "memory",
        "LOOMFLOW_HOST": "127.0.0.1",
        "LOOMFLOW_PORT": "0",
        "LOOMFLOW_METRICS_PORT": "0",
        "LOOMFLOW_TRACING": "false",
    }
    done = subprocess.run(
        [sys.executable, "-m", "loomflow.cli", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, f"serve started (or crashed) with secret {secret!r}: {done.stderr[-2000:]}"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got: {done.stderr[-2000:]}"
    assert "LOOMFLOW_AUTH_JWT_SECRET" in lines[0]
