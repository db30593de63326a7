import datetime

from loomflow._vendor.buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loomflow.v1 import tenancy_pb2 as _tenancy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Episode(_message.Message):
    __slots__ = ("id", "scope", "session_id", "input", "output", "metadata", "created_at", "run_id")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    scope: _tenancy_pb2.UserScope
    session_id: str
    input: str
    output: str
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    run_id: str
    def __init__(self, id: _Optional[str] = ..., scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., session_id: _Optional[str] = ..., input: _Optional[str] = ..., output: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_id: _Optional[str] = ...) -> None: ...

class RememberRequest(_message.Message):
    __slots__ = ("scope", "session_id", "input", "output", "metadata", "run_id")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    session_id: str
    input: str
    output: str
    metadata: _containers.ScalarMap[str, str]
    run_id: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., session_id: _Optional[str] = ..., input: _Optional[str] = ..., output: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., run_id: _Optional[str] = ...) -> None: ...

class RememberResponse(_message.Message):
    __slots__ = ("episode",)
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    episode: Episode
    def __init__(self, episode: _Optional[_Union[Episode, _Mapping]] = ...) -> None: ...

class RecallRequest(_message.Message):
    __slots__ = ("scope", "query", "session_id", "limit", "min_score", "exclude_session_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    query: str
    session_id: str
    limit: int
    min_score: float
    exclude_session_id: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., query: _Optional[str] = ..., session_id: _Optional[str] = ..., limit: _Optional[int] = ..., min_score: _Optional[float] = ..., exclude_session_id: _Optional[str] = ...) -> None: ...

class RecallHit(_message.Message):
    __slots__ = ("episode", "score", "lexical_score", "vector_score")
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_SCORE_FIELD_NUMBER: _ClassVar[int]
    VECTOR_SCORE_FIELD_NUMBER: _ClassVar[int]
    episode: Episode
    score: float
    lexical_score: float
    vector_score: float
    def __init__(self, episode: _Optional[_Union[Episode, _Mapping]] = ..., score: _Optional[float] = ..., lexical_score: _Optional[float] = ..., vector_score: _Optional[float] = ...) -> None: ...

class RecallResponse(_message.Message):
    __slots__ = ("hits", "embedder", "min_vector_similarity")
    HITS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    MIN_VECTOR_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[RecallHit]
    embedder: str
    min_vector_similarity: float
    def __init__(self, hits: _Optional[_Iterable[_Union[RecallHit, _Mapping]]] = ..., embedder: _Optional[str] = ..., min_vector_similarity: _Optional[float] = ...) -> None: ...

class GetEpisodeRequest(_message.Message):
    __slots__ = ("scope", "episode_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    episode_id: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., episode_id: _Optional[str] = ...) -> None: ...

class GetEpisodeResponse(_message.Message):
    __slots__ = ("episode",)
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    episode: Episode
    def __init__(self, episode: _Optional[_Union[Episode, _Mapping]] = ...) -> None: ...

class ListEpisodesRequest(_message.Message):
    __slots__ = ("scope", "session_id", "page_size", "page_token")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    session_id: str
    page_size: int
    page_token: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., session_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEpisodesResponse(_message.Message):
    __slots__ = ("episodes", "next_page_token")
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    episodes: _containers.RepeatedCompositeFieldContainer[Episode]
    next_page_token: str
    def __init__(self, episodes: _Optional[_Iterable[_Union[Episode, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Block(_message.Message):
    __slots__ = ("scope", "label", "session_id", "content", "version", "updated_at")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    label: str
    session_id: str
    content: str
    version: int
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., label: _Optional[str] = ..., session_id: _Optional[str] = ..., content: _Optional[str] = ..., version: _Optional[int] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PutBlockRequest(_message.Message):
    __slots__ = ("scope", "label", "session_id", "content", "expected_version")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    label: str
    session_id: str
    content: str
    expected_version: int
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., label: _Optional[str] = ..., session_id: _Optional[str] = ..., content: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class PutBlockResponse(_message.Message):
    __slots__ = ("block",)
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    block: Block
    def __init__(self, block: _Optional[_Union[Block, _Mapping]] = ...) -> None: ...

class GetBlockRequest(_message.Message):
    __slots__ = ("scope", "label", "session_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    label: str
    session_id: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., label: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class GetBlockResponse(_message.Message):
    __slots__ = ("block",)
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    block: Block
    def __init__(self, block: _Optional[_Union[Block, _Mapping]] = ...) -> None: ...

class ListBlocksRequest(_message.Message):
    __slots__ = ("scope", "session_id", "page_size", "page_token")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    session_id: str
    page_size: int
    page_token: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., session_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBlocksResponse(_message.Message):
    __slots__ = ("blocks", "next_page_token")
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    blocks: _containers.RepeatedCompositeFieldContainer[Block]
    next_page_token: str
    def __init__(self, blocks: _Optional[_Iterable[_Union[Block, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteBlockRequest(_message.Message):
    __slots__ = ("scope", "label", "session_id", "expected_version")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    label: str
    session_id: str
    expected_version: int
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., label: _Optional[str] = ..., session_id: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteBlockResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class Fact(_message.Message):
    __slots__ = ("id", "scope", "subject", "predicate", "object", "valid_from", "valid_until", "recorded_at", "retracted_at", "session_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    RETRACTED_AT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    scope: _tenancy_pb2.UserScope
    subject: str
    predicate: str
    object: str
    valid_from: _timestamp_pb2.Timestamp
    valid_until: _timestamp_pb2.Timestamp
    recorded_at: _timestamp_pb2.Timestamp
    retracted_at: _timestamp_pb2.Timestamp
    session_id: str
    def __init__(self, id: _Optional[str] = ..., scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., subject: _Optional[str] = ..., predicate: _Optional[str] = ..., object: _Optional[str] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., recorded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retracted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., session_id: _Optional[str] = ...) -> None: ...

class AssertFactRequest(_message.Message):
    __slots__ = ("scope", "subject", "predicate", "object", "valid_from", "valid_until", "session_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    subject: str
    predicate: str
    object: str
    valid_from: _timestamp_pb2.Timestamp
    valid_until: _timestamp_pb2.Timestamp
    session_id: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., subject: _Optional[str] = ..., predicate: _Optional[str] = ..., object: _Optional[str] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., session_id: _Optional[str] = ...) -> None: ...

class AssertFactResponse(_message.Message):
    __slots__ = ("fact", "superseded")
    FACT_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_FIELD_NUMBER: _ClassVar[int]
    fact: Fact
    superseded: _containers.RepeatedCompositeFieldContainer[Fact]
    def __init__(self, fact: _Optional[_Union[Fact, _Mapping]] = ..., superseded: _Optional[_Iterable[_Union[Fact, _Mapping]]] = ...) -> None: ...

class RetractFactRequest(_message.Message):
    __slots__ = ("scope", "fact_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    FACT_ID_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    fact_id: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., fact_id: _Optional[str] = ...) -> None: ...

class RetractFactResponse(_message.Message):
    __slots__ = ("fact",)
    FACT_FIELD_NUMBER: _ClassVar[int]
    fact: Fact
    def __init__(self, fact: _Optional[_Union[Fact, _Mapping]] = ...) -> None: ...

class QueryFactsRequest(_message.Message):
    __slots__ = ("scope", "subject", "predicate", "valid_at", "known_at", "include_history", "limit", "page_size", "page_token")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    VALID_AT_FIELD_NUMBER: _ClassVar[int]
    KNOWN_AT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    subject: str
    predicate: str
    valid_at: _timestamp_pb2.Timestamp
    known_at: _timestamp_pb2.Timestamp
    include_history: bool
    limit: int
    page_size: int
    page_token: str
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., subject: _Optional[str] = ..., predicate: _Optional[str] = ..., valid_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., known_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., include_history: _Optional[bool] = ..., limit: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class QueryFactsResponse(_message.Message):
    __slots__ = ("facts", "next_page_token")
    FACTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    facts: _containers.RepeatedCompositeFieldContainer[Fact]
    next_page_token: str
    def __init__(self, facts: _Optional[_Iterable[_Union[Fact, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetContextRequest(_message.Message):
    __slots__ = ("scope", "session_id", "recall_query", "recall_limit", "recall_exclude_session_id", "history_page_size", "blocks_page_size", "facts_page_size")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RECALL_QUERY_FIELD_NUMBER: _ClassVar[int]
    RECALL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    RECALL_EXCLUDE_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    FACTS_PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    session_id: str
    recall_query: str
    recall_limit: int
    recall_exclude_session_id: str
    history_page_size: int
    blocks_page_size: int
    facts_page_size: int
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., session_id: _Optional[str] = ..., recall_query: _Optional[str] = ..., recall_limit: _Optional[int] = ..., recall_exclude_session_id: _Optional[str] = ..., history_page_size: _Optional[int] = ..., blocks_page_size: _Optional[int] = ..., facts_page_size: _Optional[int] = ...) -> None: ...

class GetContextResponse(_message.Message):
    __slots__ = ("recall_hits", "embedder", "min_vector_similarity", "history", "history_next_page_token", "blocks", "more_blocks", "facts", "facts_next_page_token")
    RECALL_HITS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    MIN_VECTOR_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    HISTORY_NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    MORE_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    FACTS_NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    recall_hits: _containers.RepeatedCompositeFieldContainer[RecallHit]
    embedder: str
    min_vector_similarity: float
    history: _containers.RepeatedCompositeFieldContainer[Episode]
    history_next_page_token: str
    blocks: _containers.RepeatedCompositeFieldContainer[Block]
    more_blocks: bool
    facts: _containers.RepeatedCompositeFieldContainer[Fact]
    facts_next_page_token: str
    def __init__(self, recall_hits: _Optional[_Iterable[_Union[RecallHit, _Mapping]]] = ..., embedder: _Optional[str] = ..., min_vector_similarity: _Optional[float] = ..., history: _Optional[_Iterable[_Union[Episode, _Mapping]]] = ..., history_next_page_token: _Optional[str] = ..., blocks: _Optional[_Iterable[_Union[Block, _Mapping]]] = ..., more_blocks: _Optional[bool] = ..., facts: _Optional[_Iterable[_Union[Fact, _Mapping]]] = ..., facts_next_page_token: _Optional[str] = ...) -> None: ...

class MemoryServiceForgetRequest(_message.Message):
    __slots__ = ("scope", "session_id", "before")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    session_id: str
    before: _timestamp_pb2.Timestamp
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ..., session_id: _Optional[str] = ..., before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MemoryServiceForgetResponse(_message.Message):
    __slots__ = ("episodes_deleted", "blocks_deleted", "facts_deleted")
    EPISODES_DELETED_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_DELETED_FIELD_NUMBER: _ClassVar[int]
    FACTS_DELETED_FIELD_NUMBER: _ClassVar[int]
    episodes_deleted: int
    blocks_deleted: int
    facts_deleted: int
    def __init__(self, episodes_deleted: _Optional[int] = ..., blocks_deleted: _Optional[int] = ..., facts_deleted: _Optional[int] = ...) -> None: ...

class MemoryServiceExportRequest(_message.Message):
    __slots__ = ("scope",)
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    scope: _tenancy_pb2.UserScope
    def __init__(self, scope: _Optional[_Union[_tenancy_pb2.UserScope, _Mapping]] = ...) -> None: ...

class MemoryServiceExportResponse(_message.Message):
    __slots__ = ("episode", "block", "fact")
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    FACT_FIELD_NUMBER: _ClassVar[int]
    episode: Episode
    block: Block
    fact: Fact
    def __init__(self, episode: _Optional[_Union[Episode, _Mapping]] = ..., block: _Optional[_Union[Block, _Mapping]] = ..., fact: _Optional[_Union[Fact, _Mapping]] = ...) -> None: ...
