"""Model adapters: echo (default), scripted (tests), Anthropic and OpenAI-compatible."""

from loomflow.agent.models.base import (
    Message,
    Model,
    ModelError,
    ModelRequest,
    ModelResponse,
    ModelUsage,
    ToolCall,
    count_tokens,
)
from loomflow.agent.models.catalog import ModelCatalog, ProviderSettings
from loomflow.agent.models.echo import EchoModel
from loomflow.agent.models.retry import RetryPolicy, with_retries
from loomflow.agent.models.scripted import ScriptCase, ScriptedModel, ScriptedTurn, load_script

__all__ = [
    "EchoModel",
    "Message",
    "Model",
    "ModelCatalog",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "ModelUsage",
    "ProviderSettings",
    "RetryPolicy",
    "ScriptCase",
    "ScriptedModel",
    "ScriptedTurn",
    "ToolCall",
    "count_tokens",
    "load_script",
    "with_retries",
]
