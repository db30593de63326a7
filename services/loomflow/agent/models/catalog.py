"""Which model a run uses: a name resolved to an adapter, created once and reused.

Names: ``echo`` (the zero-key default), ``scripted`` (when a script file is
configured), ``anthropic:<model id>`` and ``openai:<model id>``. A bare
``claude-…`` id means Anthropic. Unknown names and unconfigured providers are
the caller's INVALID_ARGUMENT on ``options.model``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from loomflow.agent.models.base import Model
from loomflow.agent.models.echo import EchoModel
from loomflow.kernel import extras
from loomflow.kernel.errors import FailedPrecondition, InvalidArgument


@dataclass(frozen=True)
class ProviderSettings:
    anthropic_api_key: str = ""
    anthropic_base_url: str = ""
    openai_api_key: str = ""
    openai_base_url: str = ""
    timeout_s: float = 600.0


class ModelCatalog:
    """The models a server offers: the default, echo, scripted (if configured) and ``offered`` ones.

    Callers may only pick offered names (``*`` offers any provider model), which
    bounds the adapters created and the ``model`` label of metrics.
    """

    def __init__(
        self,
        default: str,
        providers: ProviderSettings,
        scripted: Model | None = None,
        offered: Iterable[str] = (),
    ) -> None:
        self._providers = providers
        self._models: dict[str, Model] = {"echo": EchoModel()}
        if scripted is not None:
            self._models["scripted"] = scripted
        self.default = default or "echo"
        self._offered = {name for name in offered if name} | {self.default}
        # A bad default fails at start, not on the first run (a missing extra as a ConfigError).
        self._default_model = self._resolve(self.default)

    def resolve(self, name: str) -> Model:
        if not name:
            return self._default_model
        try:
            return self._resolve(name)
        except extras.MissingExtra as exc:  # the server's install, not the caller's argument
            raise FailedPrecondition(f"options.model={name!r}: {exc}") from exc

    def _resolve(self, name: str) -> Model:
        found = self._models.get(name)
        if found is not None:
            return found
        if name not in self._offered and "*" not in self._offered:
            raise InvalidArgument.field("options.model", f"model {name!r} is not offered by this server")
        model = self._create(name)
        self._models[name] = model
        return model

    def _create(self, name: str) -> Model:
        provider, _, model_id = name.partition(":")
        if not model_id and name.startswith("claude-"):
            provider, model_id = "anthropic", name
        if provider == "anthropic" and model_id:
            extras.require("anthropic", f"model {name!r}")
            from loomflow.agent.models.anthropic import AnthropicModel

            p = self._providers
            return AnthropicModel(model_id, p.anthropic_api_key, p.anthropic_base_url, p.timeout_s)
        if provider == "openai" and model_id:
            extras.require("openai", f"model {name!r}")
            from loomflow.agent.models.openai_compat import OpenAICompatModel

            p = self._providers
            return OpenAICompatModel(model_id, p.openai_api_key, p.openai_base_url, p.timeout_s)
        raise InvalidArgument.field(
            "options.model",
            f"unknown model {name!r}: use echo, scripted, anthropic:<model id> or openai:<model id>",
        )
