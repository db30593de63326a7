import datetime

from loomflow._vendor.buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loomflow.v1 import tenancy_pb2 as _tenancy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_ALLOW: _ClassVar[Decision]
    DECISION_DENY: _ClassVar[Decision]
    DECISION_ASK: _ClassVar[Decision]

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_UNSPECIFIED: _ClassVar[Mode]
    MODE_DEFAULT: _ClassVar[Mode]
    MODE_ACCEPT_EDITS: _ClassVar[Mode]
    MODE_BYPASS: _ClassVar[Mode]
    MODE_PLAN: _ClassVar[Mode]

class ConditionOperator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONDITION_OPERATOR_UNSPECIFIED: _ClassVar[ConditionOperator]
    CONDITION_OPERATOR_EQUALS: _ClassVar[ConditionOperator]
    CONDITION_OPERATOR_NOT_EQUALS: _ClassVar[ConditionOperator]
    CONDITION_OPERATOR_MATCHES: _ClassVar[ConditionOperator]
    CONDITION_OPERATOR_NOT_MATCHES: _ClassVar[ConditionOperator]
    CONDITION_OPERATOR_IN: _ClassVar[ConditionOperator]
    CONDITION_OPERATOR_NOT_IN: _ClassVar[ConditionOperator]
    CONDITION_OPERATOR_EXISTS: _ClassVar[ConditionOperator]
    CONDITION_OPERATOR_LESS_THAN: _ClassVar[ConditionOperator]
    CONDITION_OPERATOR_GREATER_THAN: _ClassVar[ConditionOperator]

class ApprovalStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPROVAL_STATUS_UNSPECIFIED: _ClassVar[ApprovalStatus]
    APPROVAL_STATUS_PENDING: _ClassVar[ApprovalStatus]
    APPROVAL_STATUS_APPROVED: _ClassVar[ApprovalStatus]
    APPROVAL_STATUS_DENIED: _ClassVar[ApprovalStatus]
    APPROVAL_STATUS_EXPIRED: _ClassVar[ApprovalStatus]

class Resolution(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOLUTION_UNSPECIFIED: _ClassVar[Resolution]
    RESOLUTION_APPROVE: _ClassVar[Resolution]
    RESOLUTION_DENY: _ClassVar[Resolution]
DECISION_UNSPECIFIED: Decision
DECISION_ALLOW: Decision
DECISION_DENY: Decision
DECISION_ASK: Decision
MODE_UNSPECIFIED: Mode
MODE_DEFAULT: Mode
MODE_ACCEPT_EDITS: Mode
MODE_BYPASS: Mode
MODE_PLAN: Mode
CONDITION_OPERATOR_UNSPECIFIED: ConditionOperator
CONDITION_OPERATOR_EQUALS: ConditionOperator
CONDITION_OPERATOR_NOT_EQUALS: ConditionOperator
CONDITION_OPERATOR_MATCHES: ConditionOperator
CONDITION_OPERATOR_NOT_MATCHES: ConditionOperator
CONDITION_OPERATOR_IN: ConditionOperator
CONDITION_OPERATOR_NOT_IN: ConditionOperator
CONDITION_OPERATOR_EXISTS: ConditionOperator
CONDITION_OPERATOR_LESS_THAN: ConditionOperator
CONDITION_OPERATOR_GREATER_THAN: ConditionOperator
APPROVAL_STATUS_UNSPECIFIED: ApprovalStatus
APPROVAL_STATUS_PENDING: ApprovalStatus
APPROVAL_STATUS_APPROVED: ApprovalStatus
APPROVAL_STATUS_DENIED: ApprovalStatus
APPROVAL_STATUS_EXPIRED: ApprovalStatus
RESOLUTION_UNSPECIFIED: Resolution
RESOLUTION_APPROVE: Resolution
RESOLUTION_DENY: Resolution

class ArgumentCondition(_message.Message):
    __slots__ = ("argument", "operator", "values")
    ARGUMENT_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    argument: str
    operator: ConditionOperator
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, argument: _Optional[str] = ..., operator: _Optional[_Union[ConditionOperator, str]] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class Rule(_message.Message):
    __slots__ = ("id", "tool", "conditions", "decision", "reason", "self_approval")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SELF_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    id: str
    tool: str
    conditions: _containers.RepeatedCompositeFieldContainer[ArgumentCondition]
    decision: Decision
    reason: str
    self_approval: bool
    def __init__(self, id: _Optional[str] = ..., tool: _Optional[str] = ..., conditions: _Optional[_Iterable[_Union[ArgumentCondition, _Mapping]]] = ..., decision: _Optional[_Union[Decision, str]] = ..., reason: _Optional[str] = ..., self_approval: _Optional[bool] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("rules", "mode", "fallback", "version")
    RULES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[Rule]
    mode: Mode
    fallback: Decision
    version: int
    def __init__(self, rules: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ..., mode: _Optional[_Union[Mode, str]] = ..., fallback: _Optional[_Union[Decision, str]] = ..., version: _Optional[int] = ...) -> None: ...

class CheckRequest(_message.Message):
    __slots__ = ("scope", "tool_name", "arguments", "session_id", "run_id", "tool_tags")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_TAGS_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    tool_name: str
    arguments: _struct_pb2.Struct
    session_id: str
    run_id: str
    tool_tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., tool_name: _Optional[str] = ..., arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., session_id: _Optional[str] = ..., run_id: _Optional[str] = ..., tool_tags: _Optional[_Iterable[str]] = ...) -> None: ...

class CheckResponse(_message.Message):
    __slots__ = ("decision_id", "decision", "matched_rule", "reason", "mode", "approval_id")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    MATCHED_RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    decision: Decision
    matched_rule: str
    reason: str
    mode: Mode
    approval_id: str
    def __init__(self, decision_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., matched_rule: _Optional[str] = ..., reason: _Optional[str] = ..., mode: _Optional[_Union[Mode, str]] = ..., approval_id: _Optional[str] = ...) -> None: ...

class Approval(_message.Message):
    __slots__ = ("approval_id", "scope", "decision_id", "tool_name", "arguments", "session_id", "run_id", "reason", "status", "edited_arguments", "resolved_by", "note", "remember", "created_at", "resolved_at", "expires_at", "self_approval", "arguments_sha256", "deferred", "consumed_at", "consumed_run_id")
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EDITED_ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_BY_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    REMEMBER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    SELF_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    CONSUMED_AT_FIELD_NUMBER: _ClassVar[int]
    CONSUMED_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    approval_id: str
    scope: _tenancy_pb2.UserScope
    decision_id: str
    tool_name: str
    arguments: _struct_pb2.Struct
    session_id: str
    run_id: str
    reason: str
    status: ApprovalStatus
    edited_arguments: _struct_pb2.Struct
    resolved_by: str
    note: str
    remember: bool
    created_at: _timestamp_pb2.Timestamp
    resolved_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    self_approval: bool
    arguments_sha256: str
    deferred: bool
    consumed_at: _timestamp_pb2.Timestamp
    consumed_run_id: str
    def __init__(self, approval_id: _Optional[str] = ..., scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., decision_id: _Optional[str] = ..., tool_name: _Optional[str] = ..., arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., session_id: _Optional[str] = ..., run_id: _Optional[str] = ..., reason: _Optional[str] = ..., status: _Optional[_Union[ApprovalStatus, str]] = ..., edited_arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., resolved_by: _Optional[str] = ..., note: _Optional[str] = ..., remember: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., self_approval: _Optional[bool] = ..., arguments_sha256: _Optional[str] = ..., deferred: _Optional[bool] = ..., consumed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., consumed_run_id: _Optional[str] = ...) -> None: ...

class RequestApprovalRequest(_message.Message):
    __slots__ = ("scope", "decision_id", "tool_name", "arguments", "session_id", "run_id", "reason", "timeout_ms", "deferred")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    decision_id: str
    tool_name: str
    arguments: _struct_pb2.Struct
    session_id: str
    run_id: str
    reason: str
    timeout_ms: int
    deferred: bool
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., decision_id: _Optional[str] = ..., tool_name: _Optional[str] = ..., arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., session_id: _Optional[str] = ..., run_id: _Optional[str] = ..., reason: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., deferred: _Optional[bool] = ...) -> None: ...

class RequestApprovalResponse(_message.Message):
    __slots__ = ("approval",)
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    approval: Approval
    def __init__(self, approval: _Optional[_Union[Approval, _Mapping]] = ...) -> None: ...

class ResolveApprovalRequest(_message.Message):
    __slots__ = ("scope", "approval_id", "resolution", "edited_arguments", "remember", "note")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    EDITED_ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    REMEMBER_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    approval_id: str
    resolution: Resolution
    edited_arguments: _struct_pb2.Struct
    remember: bool
    note: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., approval_id: _Optional[str] = ..., resolution: _Optional[_Union[Resolution, str]] = ..., edited_arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., remember: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class ResolveApprovalResponse(_message.Message):
    __slots__ = ("approval",)
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    approval: Approval
    def __init__(self, approval: _Optional[_Union[Approval, _Mapping]] = ...) -> None: ...

class ConsumeApprovalRequest(_message.Message):
    __slots__ = ("scope", "approval_id", "tool_name", "arguments", "run_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    approval_id: str
    tool_name: str
    arguments: _struct_pb2.Struct
    run_id: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., approval_id: _Optional[str] = ..., tool_name: _Optional[str] = ..., arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., run_id: _Optional[str] = ...) -> None: ...

class ConsumeApprovalResponse(_message.Message):
    __slots__ = ("approval",)
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    approval: Approval
    def __init__(self, approval: _Optional[_Union[Approval, _Mapping]] = ...) -> None: ...

class GetApprovalRequest(_message.Message):
    __slots__ = ("scope", "approval_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    approval_id: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., approval_id: _Optional[str] = ...) -> None: ...

class GetApprovalResponse(_message.Message):
    __slots__ = ("approval",)
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    approval: Approval
    def __init__(self, approval: _Optional[_Union[Approval, _Mapping]] = ...) -> None: ...

class WatchApprovalsRequest(_message.Message):
    __slots__ = ("scope", "all_tenants", "include_resolved", "replay_pending")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ALL_TENANTS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RESOLVED_FIELD_NUMBER: _ClassVar[int]
    REPLAY_PENDING_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    all_tenants: bool
    include_resolved: bool
    replay_pending: bool
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., all_tenants: _Optional[bool] = ..., include_resolved: _Optional[bool] = ..., replay_pending: _Optional[bool] = ...) -> None: ...

class WatchApprovalsResponse(_message.Message):
    __slots__ = ("approval",)
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    approval: Approval
    def __init__(self, approval: _Optional[_Union[Approval, _Mapping]] = ...) -> None: ...

class ListApprovalsRequest(_message.Message):
    __slots__ = ("scope", "statuses", "tool_name", "created_from", "created_to", "page_size", "page_token")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_FROM_FIELD_NUMBER: _ClassVar[int]
    CREATED_TO_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    statuses: _containers.RepeatedScalarFieldContainer[ApprovalStatus]
    tool_name: str
    created_from: _timestamp_pb2.Timestamp
    created_to: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., statuses: _Optional[_Iterable[_Union[ApprovalStatus, str]]] = ..., tool_name: _Optional[str] = ..., created_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListApprovalsResponse(_message.Message):
    __slots__ = ("approvals", "next_page_token")
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    approvals: _containers.RepeatedCompositeFieldContainer[Approval]
    next_page_token: str
    def __init__(self, approvals: _Optional[_Iterable[_Union[Approval, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("scope", "default_policy")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_POLICY_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    default_policy: bool
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., default_policy: _Optional[bool] = ...) -> None: ...

class GetPolicyResponse(_message.Message):
    __slots__ = ("policy", "is_default")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    is_default: bool
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ..., is_default: _Optional[bool] = ...) -> None: ...

class PutPolicyRequest(_message.Message):
    __slots__ = ("scope", "policy", "default_policy")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_POLICY_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    policy: Policy
    default_policy: bool
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., policy: _Optional[_Union[Policy, _Mapping]] = ..., default_policy: _Optional[bool] = ...) -> None: ...

class PutPolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ...) -> None: ...

class PolicyServiceForgetRequest(_message.Message):
    __slots__ = ("scope",)
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ...) -> None: ...

class PolicyServiceForgetResponse(_message.Message):
    __slots__ = ("policy_removed", "approvals_deleted", "pending_approvals_deleted", "remembered_deleted")
    POLICY_REMOVED_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_DELETED_FIELD_NUMBER: _ClassVar[int]
    PENDING_APPROVALS_DELETED_FIELD_NUMBER: _ClassVar[int]
    REMEMBERED_DELETED_FIELD_NUMBER: _ClassVar[int]
    policy_removed: bool
    approvals_deleted: int
    pending_approvals_deleted: int
    remembered_deleted: int
    def __init__(self, policy_removed: _Optional[bool] = ..., approvals_deleted: _Optional[int] = ..., pending_approvals_deleted: _Optional[int] = ..., remembered_deleted: _Optional[int] = ...) -> None: ...

class PolicyServiceExportRequest(_message.Message):
    __slots__ = ("scope",)
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ...) -> None: ...

class RememberedAnswer(_message.Message):
    __slots__ = ("run_id", "tool_name", "approval_id", "decision", "expires_at")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    tool_name: str
    approval_id: str
    decision: Decision
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, run_id: _Optional[str] = ..., tool_name: _Optional[str] = ..., approval_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PolicyServiceExportResponse(_message.Message):
    __slots__ = ("policy", "approval", "remembered")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    REMEMBERED_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    approval: Approval
    remembered: RememberedAnswer
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ..., approval: _Optional[_Union[Approval, _Mapping]] = ..., remembered: _Optional[_Union[RememberedAnswer, _Mapping]] = ...) -> None: ...
