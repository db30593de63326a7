"""Server reflection answers what ghz and grpcurl ask, and both schema sources print the same JSON.

ghz resolves its ``call`` through ``file_containing_symbol`` with the *method's* symbol
(``loomflow.v1.MemoryService.Recall``), which grpcio-reflection could not resolve under protobuf's
upb backend ("Symbol not found"); loomflow.kernel.reflection answers it. The protoset carries no
``json_name`` (scripts/gen.sh), like the descriptors the server reflects, so grpcurl prints the
.proto field names whichever source it reads the schema from.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from loomflow.testing.secure import SecureSuite, secure_suite
from tests.support.repo import REPO

PROTOSET = REPO / "clients" / "loomflow.protoset"

pytestmark = pytest.mark.slow  # a `loomflow serve` process, grpcurl and ghz


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureSuite]:
    with secure_suite(tmp_path_factory.mktemp("reflection")) as running:
        yield running


def go_tool(name: str) -> str:
    gopath = subprocess.run(["go", "env", "GOPATH"], capture_output=True, text=True, check=False).stdout.strip()
    binary = Path(gopath or Path.home() / "go") / "bin" / name
    if not binary.exists():
        message = f"{name} is not installed at {binary}: run scripts/install-tools.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(binary)


def file_containing(address: str, symbol: str) -> reflection_pb2.ServerReflectionResponse:
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        return next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))


@pytest.mark.parametrize(
    "symbol",
    [
        "loomflow.v1.MemoryService",
        "loomflow.v1.MemoryService.Recall",  # what ghz asks
        "loomflow.v1.RecallRequest",
        "loomflow.v1.RecallRequest.query",
        "loomflow.v1.UserScope.user_id",
    ],
)
def test_reflection_resolves_services_methods_messages_and_fields(suite: SecureSuite, symbol: str) -> None:
    answer = file_containing(suite.address, symbol)
    assert answer.HasField("file_descriptor_response"), answer.error_response
    assert answer.file_descriptor_response.file_descriptor_proto


@pytest.mark.parametrize("symbol", ["loomflow.v1.MemoryService.NoSuchMethod", "loomflow.v1.Nothing.Recall"])
def test_unknown_symbols_stay_not_found(suite: SecureSuite, symbol: str) -> None:
    answer = file_containing(suite.address, symbol)
    assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_ghz_runs_on_server_reflection(suite: SecureSuite, tmp_path: Path) -> None:
    report = tmp_path / "recall.json"
    done = subprocess.run(
        [
            go_tool("ghz"),
            "--config",
            str(REPO / "bench" / "ghz" / "configs" / "recall.json"),
            "--insecure",  # plaintext; no --protoset: ghz asks the server
            "--metadata",
            json.dumps({"authorization": f"Bearer {suite.service_token}"}),
            "--total",
            "40",
            "--concurrency",
            "4",
            "--format",
            "json",
            "--output",
            str(report),
            suite.address,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    codes = json.loads(report.read_text())["statusCodeDistribution"]
    assert codes == {"OK": 40}, codes


def test_grpcurl_prints_the_same_json_with_reflection_and_with_the_protoset(suite: SecureSuite) -> None:
    def get_status(*schema: str) -> str:
        done = subprocess.run(
            [
                go_tool("grpcurl"),
                "-plaintext",
                *schema,
                "-emit-defaults",
                *("-H", f"authorization: Bearer {suite.service_token}", "-d", '{"scope": {"user_id": "alice"}}'),
                *(suite.address, "loomflow.v1.BudgetService/GetStatus"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    reflected, from_protoset = get_status(), get_status("-protoset", str(PROTOSET))
    assert '"cost_micros"' in reflected, reflected
    assert reflected == from_protoset
