"""Every RPC of every loomflow service, read from the descriptors, and a way to call any of them."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from loomflow.v1 import agent_pb2, audit_pb2, budget_pb2, memory_pb2, policy_pb2

SERVICE_FILES = (memory_pb2, budget_pb2, policy_pb2, audit_pb2, agent_pb2)


@dataclass(frozen=True)
class Rpc:
    method: MethodDescriptor

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def id(self) -> str:
        return f"{self.method.containing_service.name}.{self.method.name}"

    @property
    def streaming(self) -> bool:
        return bool(self.method.server_streaming)

    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    def call(self, channel: grpc.Channel, request: Message, timeout: float, *, max_items: int = 20) -> None:
        """Sends ``request``; a stream is read for up to ``max_items`` messages. Raises grpc.RpcError."""
        response = message_factory.GetMessageClass(self.method.output_type)
        serialize = type(request).SerializeToString
        if not self.streaming:
            channel.unary_unary(self.path, request_serializer=serialize, response_deserializer=response.FromString)(
                request, timeout=timeout
            )
            return
        open_stream = channel.unary_stream(
            self.path, request_serializer=serialize, response_deserializer=response.FromString
        )
        stream = open_stream(request, timeout=timeout)
        for count, _ in enumerate(stream, start=1):
            if count >= max_items:
                stream.cancel()
                return


ALL_RPCS = [Rpc(m) for f in SERVICE_FILES for s in f.DESCRIPTOR.services_by_name.values() for m in s.methods]


def struct_fields(rpc: Rpc) -> list[FieldDescriptor]:
    """The request's top-level ``google.protobuf.Struct`` fields (free-form JSON)."""
    return [f for f in rpc.method.input_type.fields if f.message_type and f.message_type.full_name.endswith("Struct")]


STRUCT_RPCS = [r for r in ALL_RPCS if struct_fields(r)]
"""Every RPC that takes free-form JSON."""
