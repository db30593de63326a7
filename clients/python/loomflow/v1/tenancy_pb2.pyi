from loomflow._vendor.buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Anonymous(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AllTenants(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UserScope(_message.Message):
    __slots__ = ("user_id", "anonymous", "all_tenants")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_FIELD_NUMBER: _ClassVar[int]
    ALL_TENANTS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    anonymous: Anonymous
    all_tenants: AllTenants
    def __init__(self, user_id: _Optional[str] = ..., anonymous: _Optional[_Union[Anonymous, _Mapping]] = ..., all_tenants: _Optional[_Union[AllTenants, _Mapping]] = ...) -> None: ...
