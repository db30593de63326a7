import datetime

from loomflow._vendor.buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loomflow.v1 import tenancy_pb2 as _tenancy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Dimension(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIMENSION_UNSPECIFIED: _ClassVar[Dimension]
    DIMENSION_INPUT_TOKENS: _ClassVar[Dimension]
    DIMENSION_OUTPUT_TOKENS: _ClassVar[Dimension]
    DIMENSION_TOTAL_TOKENS: _ClassVar[Dimension]
    DIMENSION_COST_MICROS: _ClassVar[Dimension]
    DIMENSION_WALL_CLOCK_MS: _ClassVar[Dimension]

class Window(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WINDOW_UNSPECIFIED: _ClassVar[Window]
    WINDOW_NONE: _ClassVar[Window]
    WINDOW_DAILY: _ClassVar[Window]
    WINDOW_MONTHLY: _ClassVar[Window]

class LimitTarget(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIMIT_TARGET_UNSPECIFIED: _ClassVar[LimitTarget]
    LIMIT_TARGET_GLOBAL: _ClassVar[LimitTarget]
    LIMIT_TARGET_DEFAULT_USER: _ClassVar[LimitTarget]
    LIMIT_TARGET_USER: _ClassVar[LimitTarget]
DIMENSION_UNSPECIFIED: Dimension
DIMENSION_INPUT_TOKENS: Dimension
DIMENSION_OUTPUT_TOKENS: Dimension
DIMENSION_TOTAL_TOKENS: Dimension
DIMENSION_COST_MICROS: Dimension
DIMENSION_WALL_CLOCK_MS: Dimension
WINDOW_UNSPECIFIED: Window
WINDOW_NONE: Window
WINDOW_DAILY: Window
WINDOW_MONTHLY: Window
LIMIT_TARGET_UNSPECIFIED: LimitTarget
LIMIT_TARGET_GLOBAL: LimitTarget
LIMIT_TARGET_DEFAULT_USER: LimitTarget
LIMIT_TARGET_USER: LimitTarget

class Usage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "wall_clock_ms")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    WALL_CLOCK_MS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    wall_clock_ms: int
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., cache_write_tokens: _Optional[int] = ..., wall_clock_ms: _Optional[int] = ...) -> None: ...

class Charge(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "total_tokens", "cached_input_tokens", "cache_write_tokens", "cost_micros", "wall_clock_ms", "priced_as")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    WALL_CLOCK_MS_FIELD_NUMBER: _ClassVar[int]
    PRICED_AS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    cost_micros: int
    wall_clock_ms: int
    priced_as: str
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., cache_write_tokens: _Optional[int] = ..., cost_micros: _Optional[int] = ..., wall_clock_ms: _Optional[int] = ..., priced_as: _Optional[str] = ...) -> None: ...

class Limit(_message.Message):
    __slots__ = ("dimension", "window", "max")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    dimension: Dimension
    window: Window
    max: int
    def __init__(self, dimension: _Optional[_Union[Dimension, str]] = ..., window: _Optional[_Union[Window, str]] = ..., max: _Optional[int] = ...) -> None: ...

class LimitUsage(_message.Message):
    __slots__ = ("limit", "applies_to", "committed", "reserved", "fraction", "window_start", "window_end")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    APPLIES_TO_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    limit: Limit
    applies_to: str
    committed: int
    reserved: int
    fraction: float
    window_start: _timestamp_pb2.Timestamp
    window_end: _timestamp_pb2.Timestamp
    def __init__(self, limit: _Optional[_Union[Limit, _Mapping]] = ..., applies_to: _Optional[str] = ..., committed: _Optional[int] = ..., reserved: _Optional[int] = ..., fraction: _Optional[float] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BudgetWarning(_message.Message):
    __slots__ = ("limit", "applies_to", "fraction", "message")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    APPLIES_TO_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    limit: Limit
    applies_to: str
    fraction: float
    message: str
    def __init__(self, limit: _Optional[_Union[Limit, _Mapping]] = ..., applies_to: _Optional[str] = ..., fraction: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class ReserveRequest(_message.Message):
    __slots__ = ("scope", "call_id", "model", "estimate", "ttl_ms", "run_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    call_id: str
    model: str
    estimate: Usage
    ttl_ms: int
    run_id: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., call_id: _Optional[str] = ..., model: _Optional[str] = ..., estimate: _Optional[_Union[Usage, _Mapping]] = ..., ttl_ms: _Optional[int] = ..., run_id: _Optional[str] = ...) -> None: ...

class ReserveResponse(_message.Message):
    __slots__ = ("reservation_id", "held", "expires_at", "warnings", "replayed")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    held: Charge
    expires_at: _timestamp_pb2.Timestamp
    warnings: _containers.RepeatedCompositeFieldContainer[BudgetWarning]
    replayed: bool
    def __init__(self, reservation_id: _Optional[str] = ..., held: _Optional[_Union[Charge, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., warnings: _Optional[_Iterable[_Union[BudgetWarning, _Mapping]]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("scope", "reservation_id", "actual")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    reservation_id: str
    actual: Usage
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., reservation_id: _Optional[str] = ..., actual: _Optional[_Union[Usage, _Mapping]] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("charged", "warnings", "replayed", "overruns")
    CHARGED_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    OVERRUNS_FIELD_NUMBER: _ClassVar[int]
    charged: Charge
    warnings: _containers.RepeatedCompositeFieldContainer[BudgetWarning]
    replayed: bool
    overruns: _containers.RepeatedCompositeFieldContainer[Overrun]
    def __init__(self, charged: _Optional[_Union[Charge, _Mapping]] = ..., warnings: _Optional[_Iterable[_Union[BudgetWarning, _Mapping]]] = ..., replayed: _Optional[bool] = ..., overruns: _Optional[_Iterable[_Union[Overrun, _Mapping]]] = ...) -> None: ...

class Overrun(_message.Message):
    __slots__ = ("dimension", "reserved", "charged", "excess")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    CHARGED_FIELD_NUMBER: _ClassVar[int]
    EXCESS_FIELD_NUMBER: _ClassVar[int]
    dimension: Dimension
    reserved: int
    charged: int
    excess: int
    def __init__(self, dimension: _Optional[_Union[Dimension, str]] = ..., reserved: _Optional[int] = ..., charged: _Optional[int] = ..., excess: _Optional[int] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("scope", "reservation_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    reservation_id: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., reservation_id: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: bool
    def __init__(self, released: _Optional[bool] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ("scope",)
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("limits", "total", "warnings")
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    limits: _containers.RepeatedCompositeFieldContainer[LimitUsage]
    total: Charge
    warnings: _containers.RepeatedCompositeFieldContainer[BudgetWarning]
    def __init__(self, limits: _Optional[_Iterable[_Union[LimitUsage, _Mapping]]] = ..., total: _Optional[_Union[Charge, _Mapping]] = ..., warnings: _Optional[_Iterable[_Union[BudgetWarning, _Mapping]]] = ...) -> None: ...

class SetLimitsRequest(_message.Message):
    __slots__ = ("scope", "target", "limits")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    target: LimitTarget
    limits: _containers.RepeatedCompositeFieldContainer[Limit]
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., target: _Optional[_Union[LimitTarget, str]] = ..., limits: _Optional[_Iterable[_Union[Limit, _Mapping]]] = ...) -> None: ...

class SetLimitsResponse(_message.Message):
    __slots__ = ("limits",)
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    limits: _containers.RepeatedCompositeFieldContainer[Limit]
    def __init__(self, limits: _Optional[_Iterable[_Union[Limit, _Mapping]]] = ...) -> None: ...

class BudgetServiceForgetRequest(_message.Message):
    __slots__ = ("scope",)
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ...) -> None: ...

class BudgetServiceForgetResponse(_message.Message):
    __slots__ = ("reservations_deleted", "open_holds_released", "usage_windows_deleted", "override_removed")
    RESERVATIONS_DELETED_FIELD_NUMBER: _ClassVar[int]
    OPEN_HOLDS_RELEASED_FIELD_NUMBER: _ClassVar[int]
    USAGE_WINDOWS_DELETED_FIELD_NUMBER: _ClassVar[int]
    OVERRIDE_REMOVED_FIELD_NUMBER: _ClassVar[int]
    reservations_deleted: int
    open_holds_released: int
    usage_windows_deleted: int
    override_removed: bool
    def __init__(self, reservations_deleted: _Optional[int] = ..., open_holds_released: _Optional[int] = ..., usage_windows_deleted: _Optional[int] = ..., override_removed: _Optional[bool] = ...) -> None: ...

class BudgetServiceExportRequest(_message.Message):
    __slots__ = ("scope",)
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ...) -> None: ...

class UsageRecord(_message.Message):
    __slots__ = ("window_key", "usage")
    WINDOW_KEY_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    window_key: str
    usage: Charge
    def __init__(self, window_key: _Optional[str] = ..., usage: _Optional[_Union[Charge, _Mapping]] = ...) -> None: ...

class ReservationRecord(_message.Message):
    __slots__ = ("reservation_id", "call_id", "state", "held", "charged", "created_at", "expires_at")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    CHARGED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    call_id: str
    state: str
    held: Charge
    charged: Charge
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, reservation_id: _Optional[str] = ..., call_id: _Optional[str] = ..., state: _Optional[str] = ..., held: _Optional[_Union[Charge, _Mapping]] = ..., charged: _Optional[_Union[Charge, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BudgetServiceExportResponse(_message.Message):
    __slots__ = ("usage", "reservation", "limit_override")
    USAGE_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    usage: UsageRecord
    reservation: ReservationRecord
    limit_override: SetLimitsResponse
    def __init__(self, usage: _Optional[_Union[UsageRecord, _Mapping]] = ..., reservation: _Optional[_Union[ReservationRecord, _Mapping]] = ..., limit_override: _Optional[_Union[SetLimitsResponse, _Mapping]] = ...) -> None: ...
