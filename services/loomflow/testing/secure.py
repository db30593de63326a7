"""A `loomflow serve` process in secure mode with minted tokens, for clients in other languages.

The Go client's tests and the grpcurl recipe test both need the production
shape: every call authenticated by a real bearer token, the server a separate
process on a free loopback port.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.testing.processes import ServeProcess

ALICE = "alice"
BOB = "bob"


@dataclass(frozen=True)
class SecureSuite:
    address: str
    jwt_secret: str
    service_token: str
    operator_token: str
    alice_token: str
    bob_token: str
    process: ServeProcess

    def client_env(self) -> dict[str, str]:
        """The LOOMFLOW_TEST_* variables clients/go/livetest reads (see its package doc)."""
        return {
            "LOOMFLOW_TEST_ADDRESS": self.address,
            "LOOMFLOW_TEST_SERVICE_TOKEN": self.service_token,
            "LOOMFLOW_TEST_OPERATOR_TOKEN": self.operator_token,
            "LOOMFLOW_TEST_ALICE": ALICE,
            "LOOMFLOW_TEST_ALICE_TOKEN": self.alice_token,
            "LOOMFLOW_TEST_BOB": BOB,
            "LOOMFLOW_TEST_BOB_TOKEN": self.bob_token,
        }


@contextlib.contextmanager
def secure_suite(data_dir: Path, services: str = "memory,budget,policy,audit,agent") -> Iterator[SecureSuite]:
    """Runs all services in one `loomflow serve` process that verifies HS256 tokens."""
    jwt_secret = secrets.token_hex(32)
    auth = AuthSettings(jwt_secret=jwt_secret)
    service_token = mint_token(auth, "go-client-tests", Role.SERVICE)
    env = {
        "LOOMFLOW_INSECURE": "false",
        "LOOMFLOW_AUTH_JWT_SECRET": jwt_secret,
        # What the Agent presents to the services it calls (same process here).
        "LOOMFLOW_AUTH_SERVICE_TOKEN": service_token,
        "LOOMFLOW_TRACING": "false",
        # Secure mode refuses to start Audit without real keys: fresh random ones per suite.
        "LOOMFLOW_AUDIT_HMAC_KEY": secrets.token_hex(32),
        "LOOMFLOW_AUDIT_SIGNING_KEY": secrets.token_hex(32),  # Ed25519 seed
        "LOOMFLOW_AUDIT_PAYLOAD_KEY": secrets.token_hex(32),
    }
    with ServeProcess(services, data_dir, env=env) as process:
        yield SecureSuite(
            address=process.address,
            jwt_secret=jwt_secret,
            service_token=service_token,
            operator_token=mint_token(auth, "ops", Role.OPERATOR),
            alice_token=mint_token(auth, ALICE, Role.USER),
            bob_token=mint_token(auth, BOB, Role.USER),
            process=process,
        )
