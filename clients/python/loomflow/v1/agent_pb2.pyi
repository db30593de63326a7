from loomflow._vendor.buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from loomflow.v1 import budget_pb2 as _budget_pb2
from loomflow.v1 import policy_pb2 as _policy_pb2
from loomflow.v1 import tenancy_pb2 as _tenancy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunOptions(_message.Message):
    __slots__ = ("prompt", "session_id", "metadata", "model", "max_turns", "timeout_ms", "recall_limit", "defer_approvals", "approval_ids")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_TURNS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    RECALL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    DEFER_APPROVALS_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_IDS_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    session_id: str
    metadata: _containers.ScalarMap[str, str]
    model: str
    max_turns: int
    timeout_ms: int
    recall_limit: int
    defer_approvals: bool
    approval_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, prompt: _Optional[str] = ..., session_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., model: _Optional[str] = ..., max_turns: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., recall_limit: _Optional[int] = ..., defer_approvals: _Optional[bool] = ..., approval_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("scope", "options")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    options: RunOptions
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., options: _Optional[_Union[RunOptions, _Mapping]] = ...) -> None: ...

class ToolCallRecord(_message.Message):
    __slots__ = ("call_id", "tool_name", "arguments", "decision", "decision_id", "approval_id", "result", "executed")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    EXECUTED_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    tool_name: str
    arguments: _struct_pb2.Struct
    decision: _policy_pb2.Decision
    decision_id: str
    approval_id: str
    result: str
    executed: bool
    def __init__(self, call_id: _Optional[str] = ..., tool_name: _Optional[str] = ..., arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., decision: _Optional[_Union[_policy_pb2.Decision, str]] = ..., decision_id: _Optional[str] = ..., approval_id: _Optional[str] = ..., result: _Optional[str] = ..., executed: _Optional[bool] = ...) -> None: ...

class RunResponse(_message.Message):
    __slots__ = ("run_id", "output", "turns", "usage", "interrupted", "interruption_reason", "tool_calls", "warnings", "recalled_episode_ids")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTION_REASON_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    RECALLED_EPISODE_IDS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    output: str
    turns: int
    usage: _budget_pb2.Charge
    interrupted: bool
    interruption_reason: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCallRecord]
    warnings: _containers.RepeatedCompositeFieldContainer[_budget_pb2.BudgetWarning]
    recalled_episode_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_id: _Optional[str] = ..., output: _Optional[str] = ..., turns: _Optional[int] = ..., usage: _Optional[_Union[_budget_pb2.Charge, _Mapping]] = ..., interrupted: _Optional[bool] = ..., interruption_reason: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCallRecord, _Mapping]]] = ..., warnings: _Optional[_Iterable[_Union[_budget_pb2.BudgetWarning, _Mapping]]] = ..., recalled_episode_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RunStreamRequest(_message.Message):
    __slots__ = ("scope", "options")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    options: RunOptions
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., options: _Optional[_Union[RunOptions, _Mapping]] = ...) -> None: ...

class TextDelta(_message.Message):
    __slots__ = ("turn", "text")
    TURN_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    turn: int
    text: str
    def __init__(self, turn: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class ApprovalEvent(_message.Message):
    __slots__ = ("approval",)
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    approval: _policy_pb2.Approval
    def __init__(self, approval: _Optional[_Union[_policy_pb2.Approval, _Mapping]] = ...) -> None: ...

class RunStreamResponse(_message.Message):
    __slots__ = ("text", "tool_call", "approval_pending", "approval_resolved", "budget_warning", "result")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_PENDING_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_RESOLVED_FIELD_NUMBER: _ClassVar[int]
    BUDGET_WARNING_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    text: TextDelta
    tool_call: ToolCallRecord
    approval_pending: ApprovalEvent
    approval_resolved: ApprovalEvent
    budget_warning: _budget_pb2.BudgetWarning
    result: RunResponse
    def __init__(self, text: _Optional[_Union[TextDelta, _Mapping]] = ..., tool_call: _Optional[_Union[ToolCallRecord, _Mapping]] = ..., approval_pending: _Optional[_Union[ApprovalEvent, _Mapping]] = ..., approval_resolved: _Optional[_Union[ApprovalEvent, _Mapping]] = ..., budget_warning: _Optional[_Union[_budget_pb2.BudgetWarning, _Mapping]] = ..., result: _Optional[_Union[RunResponse, _Mapping]] = ...) -> None: ...
