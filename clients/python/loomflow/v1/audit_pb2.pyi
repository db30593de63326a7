import datetime

from loomflow._vendor.buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loomflow.v1 import tenancy_pb2 as _tenancy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuditEntry(_message.Message):
    __slots__ = ("seq", "ts", "scope", "session_id", "run_id", "actor", "action", "payload", "decision_id", "prev_mac", "mac", "payload_shredded")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    PREV_MAC_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SHREDDED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    ts: _timestamp_pb2.Timestamp
    scope: _tenancy_pb2.UserScope
    session_id: str
    run_id: str
    actor: str
    action: str
    payload: _struct_pb2.Struct
    decision_id: str
    prev_mac: bytes
    mac: bytes
    payload_shredded: bool
    def __init__(self, seq: _Optional[int] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., session_id: _Optional[str] = ..., run_id: _Optional[str] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., decision_id: _Optional[str] = ..., prev_mac: _Optional[bytes] = ..., mac: _Optional[bytes] = ..., payload_shredded: _Optional[bool] = ...) -> None: ...

class AppendRequest(_message.Message):
    __slots__ = ("scope", "session_id", "run_id", "actor", "action", "payload", "decision_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    session_id: str
    run_id: str
    actor: str
    action: str
    payload: _struct_pb2.Struct
    decision_id: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., session_id: _Optional[str] = ..., run_id: _Optional[str] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., decision_id: _Optional[str] = ...) -> None: ...

class AppendResponse(_message.Message):
    __slots__ = ("seq", "ts", "mac")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    seq: int
    ts: _timestamp_pb2.Timestamp
    mac: bytes
    def __init__(self, seq: _Optional[int] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., mac: _Optional[bytes] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("scope", "all_tenants", "session_id", "run_id", "action", "after_seq", "limit", "from_time", "to_time")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ALL_TENANTS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FROM_TIME_FIELD_NUMBER: _ClassVar[int]
    TO_TIME_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    all_tenants: bool
    session_id: str
    run_id: str
    action: str
    after_seq: int
    limit: int
    from_time: _timestamp_pb2.Timestamp
    to_time: _timestamp_pb2.Timestamp
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., all_tenants: _Optional[bool] = ..., session_id: _Optional[str] = ..., run_id: _Optional[str] = ..., action: _Optional[str] = ..., after_seq: _Optional[int] = ..., limit: _Optional[int] = ..., from_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., to_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class ChainVerification(_message.Message):
    __slots__ = ("scope", "ok", "entries_checked", "first_bad_seq", "reason", "tenant_digest")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_CHECKED_FIELD_NUMBER: _ClassVar[int]
    FIRST_BAD_SEQ_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TENANT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    ok: bool
    entries_checked: int
    first_bad_seq: int
    reason: str
    tenant_digest: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., ok: _Optional[bool] = ..., entries_checked: _Optional[int] = ..., first_bad_seq: _Optional[int] = ..., reason: _Optional[str] = ..., tenant_digest: _Optional[str] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("scope", "all_tenants")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ALL_TENANTS_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    all_tenants: bool
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., all_tenants: _Optional[bool] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("ok", "chains", "checkpoint_id", "checkpoint_error", "unreadable_records")
    OK_FIELD_NUMBER: _ClassVar[int]
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ERROR_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_RECORDS_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    chains: _containers.RepeatedCompositeFieldContainer[ChainVerification]
    checkpoint_id: str
    checkpoint_error: str
    unreadable_records: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ok: _Optional[bool] = ..., chains: _Optional[_Iterable[_Union[ChainVerification, _Mapping]]] = ..., checkpoint_id: _Optional[str] = ..., checkpoint_error: _Optional[str] = ..., unreadable_records: _Optional[_Iterable[str]] = ...) -> None: ...

class ChainHead(_message.Message):
    __slots__ = ("tenant_digest", "seq", "mac")
    TENANT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    tenant_digest: str
    seq: int
    mac: bytes
    def __init__(self, tenant_digest: _Optional[str] = ..., seq: _Optional[int] = ..., mac: _Optional[bytes] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("checkpoint_id", "created_at", "heads", "signature", "public_key")
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    HEADS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    checkpoint_id: str
    created_at: _timestamp_pb2.Timestamp
    heads: _containers.RepeatedCompositeFieldContainer[ChainHead]
    signature: bytes
    public_key: bytes
    def __init__(self, checkpoint_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., heads: _Optional[_Iterable[_Union[ChainHead, _Mapping]]] = ..., signature: _Optional[bytes] = ..., public_key: _Optional[bytes] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ("scope", "create")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    create: bool
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., create: _Optional[bool] = ...) -> None: ...

class GetCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint",)
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: Checkpoint
    def __init__(self, checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ...) -> None: ...

class AuditServiceExportRequest(_message.Message):
    __slots__ = ("scope",)
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ...) -> None: ...

class AuditServiceExportResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: AuditEntry
    def __init__(self, entry: _Optional[_Union[AuditEntry, _Mapping]] = ...) -> None: ...

class AuditServiceForgetRequest(_message.Message):
    __slots__ = ("scope",)
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ...) -> None: ...

class AuditServiceForgetResponse(_message.Message):
    __slots__ = ("entries_shredded",)
    ENTRIES_SHREDDED_FIELD_NUMBER: _ClassVar[int]
    entries_shredded: int
    def __init__(self, entries_shredded: _Optional[int] = ...) -> None: ...

class UsageRequest(_message.Message):
    __slots__ = ("scope", "from_time", "to_time", "page_size", "page_token")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    FROM_TIME_FIELD_NUMBER: _ClassVar[int]
    TO_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    from_time: _timestamp_pb2.Timestamp
    to_time: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., from_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., to_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ModelUsage(_message.Message):
    __slots__ = ("model", "model_calls", "input_tokens", "output_tokens", "cached_input_tokens")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_CALLS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_calls: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    def __init__(self, model: _Optional[str] = ..., model_calls: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ...) -> None: ...

class TenantUsage(_message.Message):
    __slots__ = ("scope", "runs", "models", "shredded_model_calls")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    SHREDDED_MODEL_CALLS_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    runs: int
    models: _containers.RepeatedCompositeFieldContainer[ModelUsage]
    shredded_model_calls: int
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., runs: _Optional[int] = ..., models: _Optional[_Iterable[_Union[ModelUsage, _Mapping]]] = ..., shredded_model_calls: _Optional[int] = ...) -> None: ...

class UsageResponse(_message.Message):
    __slots__ = ("tenants", "next_page_token")
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[TenantUsage]
    next_page_token: str
    def __init__(self, tenants: _Optional[_Iterable[_Union[TenantUsage, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListTenantsRequest(_message.Message):
    __slots__ = ("scope", "page_size", "page_token")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    page_size: int
    page_token: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class TenantSummary(_message.Message):
    __slots__ = ("scope", "last_seen_time", "audit_entries")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    AUDIT_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    last_seen_time: _timestamp_pb2.Timestamp
    audit_entries: int
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., last_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., audit_entries: _Optional[int] = ...) -> None: ...

class ListTenantsResponse(_message.Message):
    __slots__ = ("tenants", "next_page_token")
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[TenantSummary]
    next_page_token: str
    def __init__(self, tenants: _Optional[_Iterable[_Union[TenantSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
