import datetime

from loomflow._vendor.buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loomflow.v1 import budget_pb2 as _budget_pb2
from loomflow.v1 import policy_pb2 as _policy_pb2
from loomflow.v1 import tenancy_pb2 as _tenancy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATUS_UNSPECIFIED: _ClassVar[RunStatus]
    RUN_STATUS_COMPLETED: _ClassVar[RunStatus]
    RUN_STATUS_INTERRUPTED: _ClassVar[RunStatus]
    RUN_STATUS_REQUIRES_ACTION: _ClassVar[RunStatus]

class ErasureState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERASURE_STATE_UNSPECIFIED: _ClassVar[ErasureState]
    ERASURE_STATE_PENDING: _ClassVar[ErasureState]
    ERASURE_STATE_DONE: _ClassVar[ErasureState]
RUN_STATUS_UNSPECIFIED: RunStatus
RUN_STATUS_COMPLETED: RunStatus
RUN_STATUS_INTERRUPTED: RunStatus
RUN_STATUS_REQUIRES_ACTION: RunStatus
ERASURE_STATE_UNSPECIFIED: ErasureState
ERASURE_STATE_PENDING: ErasureState
ERASURE_STATE_DONE: ErasureState

class CallerTool(_message.Message):
    __slots__ = ("name", "description", "parameters", "tags")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters: _struct_pb2.Struct
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class PendingToolCall(_message.Message):
    __slots__ = ("call_id", "tool_name", "arguments", "decision_id", "approval_id")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    tool_name: str
    arguments: _struct_pb2.Struct
    decision_id: str
    approval_id: str
    def __init__(self, call_id: _Optional[str] = ..., tool_name: _Optional[str] = ..., arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., decision_id: _Optional[str] = ..., approval_id: _Optional[str] = ...) -> None: ...

class ToolResult(_message.Message):
    __slots__ = ("call_id", "output", "is_error")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    output: str
    is_error: bool
    def __init__(self, call_id: _Optional[str] = ..., output: _Optional[str] = ..., is_error: _Optional[bool] = ...) -> None: ...

class ContinueRunRequest(_message.Message):
    __slots__ = ("scope", "run_id", "results")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    run_id: str
    results: _containers.RepeatedCompositeFieldContainer[ToolResult]
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., run_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ToolResult, _Mapping]]] = ...) -> None: ...

class ContinueRunResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: RunResponse
    def __init__(self, result: _Optional[_Union[RunResponse, _Mapping]] = ...) -> None: ...

class ContinueRunStreamRequest(_message.Message):
    __slots__ = ("scope", "run_id", "results")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    run_id: str
    results: _containers.RepeatedCompositeFieldContainer[ToolResult]
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., run_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ToolResult, _Mapping]]] = ...) -> None: ...

class ContinueRunStreamResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: RunStreamResponse
    def __init__(self, event: _Optional[_Union[RunStreamResponse, _Mapping]] = ...) -> None: ...

class RunOptions(_message.Message):
    __slots__ = ("prompt", "session_id", "metadata", "model", "max_turns", "timeout_ms", "recall_limit", "defer_approvals", "approval_ids", "agent", "caller_tools")
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
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CALLER_TOOLS_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    session_id: str
    metadata: _containers.ScalarMap[str, str]
    model: str
    max_turns: int
    timeout_ms: int
    recall_limit: int
    defer_approvals: bool
    approval_ids: _containers.RepeatedScalarFieldContainer[str]
    agent: str
    caller_tools: _containers.RepeatedCompositeFieldContainer[CallerTool]
    def __init__(self, prompt: _Optional[str] = ..., session_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., model: _Optional[str] = ..., max_turns: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., recall_limit: _Optional[int] = ..., defer_approvals: _Optional[bool] = ..., approval_ids: _Optional[_Iterable[str]] = ..., agent: _Optional[str] = ..., caller_tools: _Optional[_Iterable[_Union[CallerTool, _Mapping]]] = ...) -> None: ...

class AgentDefinition(_message.Message):
    __slots__ = ("name", "system_prompt", "model", "tools", "recall_limit", "history_turns", "history_tokens", "max_turns", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    RECALL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_TURNS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_TURNS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    system_prompt: str
    model: str
    tools: _containers.RepeatedScalarFieldContainer[str]
    recall_limit: int
    history_turns: int
    history_tokens: int
    max_turns: int
    version: int
    def __init__(self, name: _Optional[str] = ..., system_prompt: _Optional[str] = ..., model: _Optional[str] = ..., tools: _Optional[_Iterable[str]] = ..., recall_limit: _Optional[int] = ..., history_turns: _Optional[int] = ..., history_tokens: _Optional[int] = ..., max_turns: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class PutAgentRequest(_message.Message):
    __slots__ = ("scope", "agent")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    agent: AgentDefinition
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., agent: _Optional[_Union[AgentDefinition, _Mapping]] = ...) -> None: ...

class PutAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: AgentDefinition
    def __init__(self, agent: _Optional[_Union[AgentDefinition, _Mapping]] = ...) -> None: ...

class GetAgentRequest(_message.Message):
    __slots__ = ("scope", "name")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    name: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class GetAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: AgentDefinition
    def __init__(self, agent: _Optional[_Union[AgentDefinition, _Mapping]] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ("scope", "page_size", "page_token")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    page_size: int
    page_token: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents", "next_page_token")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentDefinition]
    next_page_token: str
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentDefinition, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteAgentRequest(_message.Message):
    __slots__ = ("scope", "name")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    name: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class DeleteAgentResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("run_id", "output", "turns", "usage", "interrupted", "interruption_reason", "tool_calls", "warnings", "recalled_episode_ids", "history_episode_ids", "status", "pending_tool_calls", "expires_at")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTION_REASON_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    RECALLED_EPISODE_IDS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_EPISODE_IDS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PENDING_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    output: str
    turns: int
    usage: _budget_pb2.Charge
    interrupted: bool
    interruption_reason: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCallRecord]
    warnings: _containers.RepeatedCompositeFieldContainer[_budget_pb2.BudgetWarning]
    recalled_episode_ids: _containers.RepeatedScalarFieldContainer[str]
    history_episode_ids: _containers.RepeatedScalarFieldContainer[str]
    status: RunStatus
    pending_tool_calls: _containers.RepeatedCompositeFieldContainer[PendingToolCall]
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, run_id: _Optional[str] = ..., output: _Optional[str] = ..., turns: _Optional[int] = ..., usage: _Optional[_Union[_budget_pb2.Charge, _Mapping]] = ..., interrupted: _Optional[bool] = ..., interruption_reason: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCallRecord, _Mapping]]] = ..., warnings: _Optional[_Iterable[_Union[_budget_pb2.BudgetWarning, _Mapping]]] = ..., recalled_episode_ids: _Optional[_Iterable[str]] = ..., history_episode_ids: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[RunStatus, str]] = ..., pending_tool_calls: _Optional[_Iterable[_Union[PendingToolCall, _Mapping]]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

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

class ForgetUserRequest(_message.Message):
    __slots__ = ("scope", "request_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    request_id: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ErasureStep(_message.Message):
    __slots__ = ("service", "state", "counts", "attempts", "last_error", "done_at")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    DONE_AT_FIELD_NUMBER: _ClassVar[int]
    service: str
    state: ErasureState
    counts: _containers.ScalarMap[str, int]
    attempts: int
    last_error: str
    done_at: _timestamp_pb2.Timestamp
    def __init__(self, service: _Optional[str] = ..., state: _Optional[_Union[ErasureState, str]] = ..., counts: _Optional[_Mapping[str, int]] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., done_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Erasure(_message.Message):
    __slots__ = ("erasure_id", "scope", "state", "steps", "created_at", "done_at", "requested_by", "next_attempt_at")
    ERASURE_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DONE_AT_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    erasure_id: str
    scope: _tenancy_pb2.UserScope
    state: ErasureState
    steps: _containers.RepeatedCompositeFieldContainer[ErasureStep]
    created_at: _timestamp_pb2.Timestamp
    done_at: _timestamp_pb2.Timestamp
    requested_by: str
    next_attempt_at: _timestamp_pb2.Timestamp
    def __init__(self, erasure_id: _Optional[str] = ..., scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., state: _Optional[_Union[ErasureState, str]] = ..., steps: _Optional[_Iterable[_Union[ErasureStep, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., done_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requested_by: _Optional[str] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ForgetUserResponse(_message.Message):
    __slots__ = ("erasure",)
    ERASURE_FIELD_NUMBER: _ClassVar[int]
    erasure: Erasure
    def __init__(self, erasure: _Optional[_Union[Erasure, _Mapping]] = ...) -> None: ...

class GetErasureRequest(_message.Message):
    __slots__ = ("scope", "erasure_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ERASURE_ID_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    erasure_id: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., erasure_id: _Optional[str] = ...) -> None: ...

class GetErasureResponse(_message.Message):
    __slots__ = ("erasure",)
    ERASURE_FIELD_NUMBER: _ClassVar[int]
    erasure: Erasure
    def __init__(self, erasure: _Optional[_Union[Erasure, _Mapping]] = ...) -> None: ...

class ExportUserRequest(_message.Message):
    __slots__ = ("scope",)
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ...) -> None: ...

class ExportUserResponse(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class AgentServiceListTenantsRequest(_message.Message):
    __slots__ = ("scope", "page_size", "page_token")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    page_size: int
    page_token: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class TenantPresence(_message.Message):
    __slots__ = ("scope", "last_seen_time", "services")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    last_seen_time: _timestamp_pb2.Timestamp
    services: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., last_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., services: _Optional[_Iterable[str]] = ...) -> None: ...

class AgentServiceListTenantsResponse(_message.Message):
    __slots__ = ("tenants", "next_page_token")
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[TenantPresence]
    next_page_token: str
    def __init__(self, tenants: _Optional[_Iterable[_Union[TenantPresence, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
