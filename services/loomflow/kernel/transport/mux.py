"""The multiplexed transport's contract: which field of ``MuxCall`` carries which unary RPC.

``proto/loomflow/v1/mux.proto`` declares one envelope whose ``request`` oneof has a field per
unary RPC of the internal services, typed with that RPC's request. The tables
below are derived from the descriptors, so the client (mux_client.py) and the server
(mux_server.py) agree on them without a hand-kept list.
"""

from __future__ import annotations

from loomflow.v1 import mux_pb2

SERVICE = mux_pb2.DESCRIPTOR.services_by_name["MuxService"].full_name
METHOD = f"/{SERVICE}/Multiplex"
DETAILS_KEY = "grpc-status-details-bin"
AUTHORIZATION = "authorization"


def _tables() -> tuple[dict[str, str], dict[str, str]]:
    by_request: dict[str, str] = {}
    for file in mux_pb2.DESCRIPTOR.dependencies:
        for service in file.services_by_name.values():
            for method in service.methods:
                if not method.server_streaming and not method.client_streaming:
                    by_request[method.input_type.full_name] = f"/{service.full_name}/{method.name}"
    method_of_field: dict[str, str] = {}
    for field in mux_pb2.MuxCall.DESCRIPTOR.oneofs_by_name["request"].fields:
        assert field.message_type is not None, f"MuxCall.{field.name} carries a message"
        method_of_field[field.name] = by_request[field.message_type.full_name]
    return method_of_field, {method: field for field, method in method_of_field.items()}


METHOD_OF_FIELD, FIELD_OF_METHOD = _tables()
"""A oneof field name → the method it carries (``<service>_<rpc>`` → ``/loomflow.v1.<Service>/<Rpc>``), and back."""
