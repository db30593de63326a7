"""The ergonomic async Python client of loomflow.

``Agent`` runs the agent for a tenant; ``MemoryClient``, ``BudgetClient``,
``PolicyClient`` and ``AuditClient`` are thin typed wrappers of the four
services, every method taking ``user_id=`` (or ``anonymous=True``). Failures
raise the typed exceptions of :mod:`loomflow.client.errors`.
"""

from loomflow.client._transport import Connection, RetryPolicy, scope, tls_credentials
from loomflow.client.agent import (
    Agent,
    Approval,
    ApprovalAnswer,
    ApprovalPending,
    ApprovalResolved,
    BudgetWarning,
    BudgetWarningEvent,
    Completed,
    PendingToolCall,
    RunEvent,
    RunResult,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    Usage,
)
from loomflow.client.audit import AuditClient
from loomflow.client.budget import BudgetClient, limit, usage
from loomflow.client.errors import (
    AlreadyExists,
    ApprovalRequired,
    BudgetExceeded,
    Cancelled,
    Conflict,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    LoomflowError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    from_rpc_error,
)
from loomflow.client.memory import MemoryClient
from loomflow.client.policy import PolicyClient
from loomflow.client.tools import RunContext, Tool, get_run_context, tool

__all__ = [
    "Agent",
    "AlreadyExists",
    "Approval",
    "ApprovalAnswer",
    "ApprovalPending",
    "ApprovalRequired",
    "ApprovalResolved",
    "AuditClient",
    "BudgetClient",
    "BudgetExceeded",
    "BudgetWarning",
    "BudgetWarningEvent",
    "Cancelled",
    "Completed",
    "Conflict",
    "Connection",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "LoomflowError",
    "MemoryClient",
    "NotFound",
    "PendingToolCall",
    "PermissionDenied",
    "PolicyClient",
    "RateLimited",
    "ResourceExhausted",
    "RetryPolicy",
    "RunContext",
    "RunEvent",
    "RunResult",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallEvent",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Usage",
    "from_rpc_error",
    "get_run_context",
    "limit",
    "scope",
    "tls_credentials",
    "tool",
    "usage",
]
