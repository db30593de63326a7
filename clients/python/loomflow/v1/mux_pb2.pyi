from loomflow._vendor.buf.validate import validate_pb2 as _validate_pb2
from loomflow.v1 import audit_pb2 as _audit_pb2
from loomflow.v1 import budget_pb2 as _budget_pb2
from loomflow.v1 import memory_pb2 as _memory_pb2
from loomflow.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MultiplexRequest(_message.Message):
    __slots__ = ("calls", "cancelled")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[MuxCall]
    cancelled: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, calls: _Optional[_Iterable[_Union[MuxCall, _Mapping]]] = ..., cancelled: _Optional[_Iterable[int]] = ...) -> None: ...

class MuxCall(_message.Message):
    __slots__ = ("id", "timeout_us", "metadata", "memory_remember", "memory_recall", "memory_get_episode", "memory_list_episodes", "memory_put_block", "memory_get_block", "memory_list_blocks", "memory_delete_block", "memory_assert_fact", "memory_retract_fact", "memory_query_facts", "memory_forget", "memory_get_context", "budget_reserve", "budget_commit", "budget_release", "budget_get_status", "budget_set_limits", "budget_forget", "policy_check", "policy_request_approval", "policy_consume_approval", "policy_resolve_approval", "policy_get_approval", "policy_list_approvals", "policy_get_policy", "policy_put_policy", "policy_forget", "audit_append", "audit_query", "audit_verify", "audit_get_checkpoint", "audit_forget", "audit_usage", "audit_list_tenants")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_US_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MEMORY_REMEMBER_FIELD_NUMBER: _ClassVar[int]
    MEMORY_RECALL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_GET_EPISODE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIST_EPISODES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PUT_BLOCK_FIELD_NUMBER: _ClassVar[int]
    MEMORY_GET_BLOCK_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIST_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_DELETE_BLOCK_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ASSERT_FACT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_RETRACT_FACT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_QUERY_FACTS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FORGET_FIELD_NUMBER: _ClassVar[int]
    MEMORY_GET_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_RESERVE_FIELD_NUMBER: _ClassVar[int]
    BUDGET_COMMIT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_RELEASE_FIELD_NUMBER: _ClassVar[int]
    BUDGET_GET_STATUS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_SET_LIMITS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FORGET_FIELD_NUMBER: _ClassVar[int]
    POLICY_CHECK_FIELD_NUMBER: _ClassVar[int]
    POLICY_REQUEST_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    POLICY_CONSUME_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    POLICY_RESOLVE_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    POLICY_GET_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    POLICY_LIST_APPROVALS_FIELD_NUMBER: _ClassVar[int]
    POLICY_GET_POLICY_FIELD_NUMBER: _ClassVar[int]
    POLICY_PUT_POLICY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FORGET_FIELD_NUMBER: _ClassVar[int]
    AUDIT_APPEND_FIELD_NUMBER: _ClassVar[int]
    AUDIT_QUERY_FIELD_NUMBER: _ClassVar[int]
    AUDIT_VERIFY_FIELD_NUMBER: _ClassVar[int]
    AUDIT_GET_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FORGET_FIELD_NUMBER: _ClassVar[int]
    AUDIT_USAGE_FIELD_NUMBER: _ClassVar[int]
    AUDIT_LIST_TENANTS_FIELD_NUMBER: _ClassVar[int]
    id: int
    timeout_us: int
    metadata: _containers.ScalarMap[str, str]
    memory_remember: _memory_pb2.RememberRequest
    memory_recall: _memory_pb2.RecallRequest
    memory_get_episode: _memory_pb2.GetEpisodeRequest
    memory_list_episodes: _memory_pb2.ListEpisodesRequest
    memory_put_block: _memory_pb2.PutBlockRequest
    memory_get_block: _memory_pb2.GetBlockRequest
    memory_list_blocks: _memory_pb2.ListBlocksRequest
    memory_delete_block: _memory_pb2.DeleteBlockRequest
    memory_assert_fact: _memory_pb2.AssertFactRequest
    memory_retract_fact: _memory_pb2.RetractFactRequest
    memory_query_facts: _memory_pb2.QueryFactsRequest
    memory_forget: _memory_pb2.MemoryServiceForgetRequest
    memory_get_context: _memory_pb2.GetContextRequest
    budget_reserve: _budget_pb2.ReserveRequest
    budget_commit: _budget_pb2.CommitRequest
    budget_release: _budget_pb2.ReleaseRequest
    budget_get_status: _budget_pb2.GetStatusRequest
    budget_set_limits: _budget_pb2.SetLimitsRequest
    budget_forget: _budget_pb2.BudgetServiceForgetRequest
    policy_check: _policy_pb2.CheckRequest
    policy_request_approval: _policy_pb2.RequestApprovalRequest
    policy_consume_approval: _policy_pb2.ConsumeApprovalRequest
    policy_resolve_approval: _policy_pb2.ResolveApprovalRequest
    policy_get_approval: _policy_pb2.GetApprovalRequest
    policy_list_approvals: _policy_pb2.ListApprovalsRequest
    policy_get_policy: _policy_pb2.GetPolicyRequest
    policy_put_policy: _policy_pb2.PutPolicyRequest
    policy_forget: _policy_pb2.PolicyServiceForgetRequest
    audit_append: _audit_pb2.AppendRequest
    audit_query: _audit_pb2.QueryRequest
    audit_verify: _audit_pb2.VerifyRequest
    audit_get_checkpoint: _audit_pb2.GetCheckpointRequest
    audit_forget: _audit_pb2.AuditServiceForgetRequest
    audit_usage: _audit_pb2.UsageRequest
    audit_list_tenants: _audit_pb2.ListTenantsRequest
    def __init__(self, id: _Optional[int] = ..., timeout_us: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., memory_remember: _Optional[_Union[_memory_pb2.RememberRequest, _Mapping]] = ..., memory_recall: _Optional[_Union[_memory_pb2.RecallRequest, _Mapping]] = ..., memory_get_episode: _Optional[_Union[_memory_pb2.GetEpisodeRequest, _Mapping]] = ..., memory_list_episodes: _Optional[_Union[_memory_pb2.ListEpisodesRequest, _Mapping]] = ..., memory_put_block: _Optional[_Union[_memory_pb2.PutBlockRequest, _Mapping]] = ..., memory_get_block: _Optional[_Union[_memory_pb2.GetBlockRequest, _Mapping]] = ..., memory_list_blocks: _Optional[_Union[_memory_pb2.ListBlocksRequest, _Mapping]] = ..., memory_delete_block: _Optional[_Union[_memory_pb2.DeleteBlockRequest, _Mapping]] = ..., memory_assert_fact: _Optional[_Union[_memory_pb2.AssertFactRequest, _Mapping]] = ..., memory_retract_fact: _Optional[_Union[_memory_pb2.RetractFactRequest, _Mapping]] = ..., memory_query_facts: _Optional[_Union[_memory_pb2.QueryFactsRequest, _Mapping]] = ..., memory_forget: _Optional[_Union[_memory_pb2.MemoryServiceForgetRequest, _Mapping]] = ..., memory_get_context: _Optional[_Union[_memory_pb2.GetContextRequest, _Mapping]] = ..., budget_reserve: _Optional[_Union[_budget_pb2.ReserveRequest, _Mapping]] = ..., budget_commit: _Optional[_Union[_budget_pb2.CommitRequest, _Mapping]] = ..., budget_release: _Optional[_Union[_budget_pb2.ReleaseRequest, _Mapping]] = ..., budget_get_status: _Optional[_Union[_budget_pb2.GetStatusRequest, _Mapping]] = ..., budget_set_limits: _Optional[_Union[_budget_pb2.SetLimitsRequest, _Mapping]] = ..., budget_forget: _Optional[_Union[_budget_pb2.BudgetServiceForgetRequest, _Mapping]] = ..., policy_check: _Optional[_Union[_policy_pb2.CheckRequest, _Mapping]] = ..., policy_request_approval: _Optional[_Union[_policy_pb2.RequestApprovalRequest, _Mapping]] = ..., policy_consume_approval: _Optional[_Union[_policy_pb2.ConsumeApprovalRequest, _Mapping]] = ..., policy_resolve_approval: _Optional[_Union[_policy_pb2.ResolveApprovalRequest, _Mapping]] = ..., policy_get_approval: _Optional[_Union[_policy_pb2.GetApprovalRequest, _Mapping]] = ..., policy_list_approvals: _Optional[_Union[_policy_pb2.ListApprovalsRequest, _Mapping]] = ..., policy_get_policy: _Optional[_Union[_policy_pb2.GetPolicyRequest, _Mapping]] = ..., policy_put_policy: _Optional[_Union[_policy_pb2.PutPolicyRequest, _Mapping]] = ..., policy_forget: _Optional[_Union[_policy_pb2.PolicyServiceForgetRequest, _Mapping]] = ..., audit_append: _Optional[_Union[_audit_pb2.AppendRequest, _Mapping]] = ..., audit_query: _Optional[_Union[_audit_pb2.QueryRequest, _Mapping]] = ..., audit_verify: _Optional[_Union[_audit_pb2.VerifyRequest, _Mapping]] = ..., audit_get_checkpoint: _Optional[_Union[_audit_pb2.GetCheckpointRequest, _Mapping]] = ..., audit_forget: _Optional[_Union[_audit_pb2.AuditServiceForgetRequest, _Mapping]] = ..., audit_usage: _Optional[_Union[_audit_pb2.UsageRequest, _Mapping]] = ..., audit_list_tenants: _Optional[_Union[_audit_pb2.ListTenantsRequest, _Mapping]] = ...) -> None: ...

class MultiplexResponse(_message.Message):
    __slots__ = ("replies",)
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[MuxReply]
    def __init__(self, replies: _Optional[_Iterable[_Union[MuxReply, _Mapping]]] = ...) -> None: ...

class MuxReply(_message.Message):
    __slots__ = ("id", "response", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    response: bytes
    error: MuxError
    def __init__(self, id: _Optional[int] = ..., response: _Optional[bytes] = ..., error: _Optional[_Union[MuxError, _Mapping]] = ...) -> None: ...

class MuxError(_message.Message):
    __slots__ = ("code", "message", "status_details")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_DETAILS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    status_details: bytes
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., status_details: _Optional[bytes] = ...) -> None: ...
