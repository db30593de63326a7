"""Server reflection that also resolves method (and field) symbols.

grpcio-reflection answers ``file_containing_symbol`` with the descriptor pool's
``FindFileContainingSymbol``. Under protobuf's default upb backend that lookup
knows messages, enums and services but not their members: a request for
``package.Service.Method`` fails with NOT_FOUND, which ghz (it asks
for the method's symbol) reports as "Symbol not found" while grpcurl (it asks for
the service) works. A member lives in the same file as its parent, so on a miss
this servicer answers with the file of the enclosing symbol, as the C++ pool does.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

SERVICE_NAME = reflection.SERVICE_NAME


class MemberResolvingReflectionServicer(ReflectionServicer):  # type: ignore[misc]  # untyped library
    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        answer = super()._file_containing_symbol(request, fully_qualified_name)
        parent, dot, member = fully_qualified_name.rpartition(".")
        if not answer.HasField("error_response") or not dot or not self._is_member(parent, member):
            return answer
        return super()._file_containing_symbol(request, parent)

    def _is_member(self, parent: str, member: str) -> bool:
        """Whether ``member`` names a method of service ``parent`` or a field, nested type or value of it."""
        for find, members in (
            (self._pool.FindServiceByName, lambda d: d.methods_by_name),
            (self._pool.FindMessageTypeByName, lambda d: {**d.fields_by_name, **d.nested_types_by_name}),
            (self._pool.FindEnumTypeByName, lambda d: d.values_by_name),
        ):
            try:
                descriptor = find(parent)
            except KeyError:
                continue
            return member in members(descriptor)
        return False


def enable_server_reflection(service_names: list[str], server: grpc.aio.Server) -> None:
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(MemberResolvingReflectionServicer(service_names), server)
