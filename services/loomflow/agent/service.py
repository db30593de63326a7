"""Hosts the AgentService: the stateless orchestrator of the four other services.

Every option is a flag and a ``LOOMFLOW_AGENT_*`` variable. An empty dependency
address means "this process": the Agent then calls the services hosted next to
it through their kernel pipeline without sockets (``transport=inprocess``, the
default; kernel/transport/inprocess.py), or over real gRPC on the server's own
port (``transport=grpc``, or ``transport=mux``: multiplexed streams, kernel/transport/mux*.py).
A service in another process is reached over multiplexed streams unless ``transport=grpc``.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from loomflow import retention
from loomflow.agent.approvals import ApprovalWaiter
from loomflow.agent.definitions import AgentDefinition, AgentDefinitions, TenantPolicies, load_yaml
from loomflow.agent.dependencies import IN_PROCESS, Addresses, Dependencies, ServiceCredential
from loomflow.agent.erasure import UserData
from loomflow.agent.erasure.eraser import Eraser, EraserSettings
from loomflow.agent.erasure.steps import Steps
from loomflow.agent.models.base import Model
from loomflow.agent.models.catalog import ModelCatalog, ProviderSettings
from loomflow.agent.models.retry import RetryPolicy
from loomflow.agent.models.scripted import load_script
from loomflow.agent.paused import Pauses, PauseSettings, Sweeper
from loomflow.agent.refusals import RefusalAuditor
from loomflow.agent.run.limits import RunLimits
from loomflow.agent.run.slots import RunSlots
from loomflow.agent.runner import Runner
from loomflow.agent.seeding import SeedLimits
from loomflow.agent.servicer import AgentServicer
from loomflow.agent.store import open_agent_store
from loomflow.agent.toolcalls import ToolCaller
from loomflow.agent.tools.builtins import BUILTINS
from loomflow.agent.tools.registry import ToolRegistry
from loomflow.agent.tools.workers import ToolWorkers, WorkerLimits
from loomflow.kernel.backends import migrations
from loomflow.kernel.config import ConfigError, option
from loomflow.kernel.errors import InvalidArgument
from loomflow.kernel.hosting import HostedService, ServiceContext
from loomflow.kernel.tls import ClientTls
from loomflow.kernel.transport.inprocess import InProcessChannel, certificate_auth_context
from loomflow.kernel.transport.mux_client import MuxSettings
from loomflow.v1 import agent_pb2, agent_pb2_grpc

SECTION = "agent"
DEPENDENCIES = ("memory", "budget", "policy", "audit")


@dataclass(frozen=True)
class Settings:
    memory_address: str = option("", "MemoryService host:port (empty: this process)")
    budget_address: str = option("", "BudgetService host:port (empty: this process)")
    policy_address: str = option("", "PolicyService host:port (empty: this process)")
    audit_address: str = option("", "AuditService host:port (empty: this process)")
    transport: str = option(
        "inprocess",
        "how the Agent calls the services: inprocess (those in its own process without sockets, the others over "
        "a few multiplexed streams per address), grpc (all unary) or mux (all multiplexed, its own process too; "
        "docs/performance.md)",
    )
    mux_streams: int = option(2, "long-lived multiplexed streams per service address (not with transport=grpc)")
    mux_batch: int = option(64, "multiplexed calls coalesced into one stream write, at most")
    mux_max_in_flight: int = option(
        256, "multiplexed calls in flight per stream, at most (more wait; one tenant holds a quarter at most)"
    )
    tls_ca: str = option("", "PEM CA bundle the Agent trusts for the other services (set: TLS on its channels)")
    tls_cert: str = option("", "PEM client certificate the Agent presents to the other services (mTLS)")
    tls_key: str = option("", "PEM private key of agent_tls_cert")
    tls_server_name: str = option("", "name checked against the services' certificates instead of the target's host")
    model: str = option("echo", "default model: echo, scripted, anthropic:<model id> or openai:<model id>")
    models: str = option("", "other models callers may pick, comma-separated (`*`: any provider model)")
    max_turns: int = option(8, "model turns per run at most, unless the run asks for fewer or more")
    timeout_ms: int = option(60_000, "run timeout in ms, unless the run sets one (charged to the wall-clock budget)")
    recall_limit: int = option(5, "episodes recalled into each run's context (0: no recall)")
    context_tokens: int = option(512, "at most this many tokens of recalled memories per run")
    recall_min_similarity: float = option(
        -1.0,
        "a recalled episode sharing no word with the prompt needs at least this cosine similarity "
        "(below 0: tuned per embedder, hashing 0.2, wordllama see docs/memory.md)",
    )
    history_turns: int = option(20, "earlier turns of the run's session given to the model, at most (0: none)")
    history_tokens: int = option(2048, "at most this many tokens of session history per run (newest turns first)")
    block_tokens: int = option(512, "at most this many tokens of the user's working blocks in the system context")
    fact_tokens: int = option(256, "at most this many tokens of current facts matching the prompt (0: none)")
    max_output_tokens: int = option(1024, "output tokens per model turn at most (what each turn reserves)")
    system_prompt: str = option("You are a helpful assistant.", "system prompt of every run")
    approval_timeout_ms: int = option(300_000, "how long a tool call waits for a human approval before denying")
    approval_poll_ms: int = option(1000, "how often a waiting run re-reads its approval besides the watch stream")
    call_timeout_ms: int = option(5000, "deadline of one call to another service, at most (the run's own is shorter)")
    model_attempts: int = option(4, "model calls per turn at most, retrying 429/5xx/connection errors with backoff")
    model_backoff_ms: int = option(200, "first retry delay; doubles each retry, with jitter")
    model_timeout_ms: int = option(600_000, "HTTP timeout of one provider request")
    anthropic_api_key: str = option("", "Anthropic API key (empty: the SDK reads ANTHROPIC_API_KEY)", secret=True)
    anthropic_base_url: str = option("", "Anthropic API base URL (empty: the SDK default)")
    openai_api_key: str = option("", "OpenAI(-compatible) API key (empty: OPENAI_API_KEY, or none)", secret=True)
    openai_base_url: str = option("", "OpenAI-compatible base URL, e.g. http://localhost:8000/v1 for vLLM")
    script_file: str = option("", "JSON script that enables the `scripted` model (tests and demos)")
    builtin_tools: bool = option(True, "offer the built-in tools (calculator, current_time, notes_*)")
    tools: str = option("", "more tools: comma-separated module:attribute paths of Tools or iterables of them")
    max_tool_result_chars: int = option(16_000, "a tool result longer than this is truncated for the model")
    tool_timeout_ms: int = option(10_000, "deadline of one tool call unless the tool sets one (never past the run's)")
    tool_workers: int = option(2, "worker processes running synchronous (blocking, CPU-bound) tools")
    tool_worker_memory_mb: int = option(1024, "address-space limit of each tool worker process, in MiB")
    store_dsn: str = option(
        "", "durable store of agent definitions and paused runs: sqlite:///path or postgres://… (empty: data dir)"
    )
    definitions_file: str = option("", "YAML file of agent definitions (`agents: [...]`) put into the store at start")
    definitions_cache_ms: int = option(2000, "how long a replica reuses an agent definition it read")
    policy_cache_ms: int = option(
        5000, "how long a replica reuses a tenant's policy to decide which tools to offer (calls are checked live)"
    )
    pause_ttl_ms: int = option(
        600_000, "how long a run paused for its caller's tool results waits (then its hold goes)"
    )
    max_paused_runs: int = option(100, "paused runs per user at most (more: RESOURCE_EXHAUSTED)")
    max_caller_result_chars: int = option(65_536, "a caller tool result longer than this is refused (INVALID_ARGUMENT)")
    pause_sweep_ms: int = option(1000, "how often expired paused runs are swept and their holds released")
    erasure_retry_ms: int = option(1000, "first retry delay of a ForgetUser whose service was down (then doubling)")
    erasure_retry_max_ms: int = option(60_000, "longest delay between retries of a pending ForgetUser")
    run_slots: int = option(
        0,
        "runs executing at once, all tenants together, before a tenant's second run waits (its first never "
        "does); a freed slot goes to the waiting tenant running the fewest (0: off)",
    )


def _loopback(host: str) -> str:
    """Where this process can reach its own listening socket."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


TRANSPORTS = ("inprocess", "grpc", "mux")


def resolve_addresses(settings: Settings, ctx: ServiceContext) -> Addresses:
    hosted = set(ctx.server.service_names())
    own = IN_PROCESS if settings.transport == "inprocess" else f"{_loopback(ctx.server.host)}:{ctx.bound_port}"
    resolved: dict[str, str] = {}
    for name in DEPENDENCIES:
        address: str = getattr(settings, f"{name}_address")
        if not address:
            if name not in hosted:
                raise ConfigError(
                    f"LOOMFLOW_AGENT_{name.upper()}_ADDRESS is empty (this process) but this process does not host "
                    f"{name}; set it to the {name} service's host:port"
                )
            address = own
        resolved[name] = address
    return Addresses(**resolved)


def client_tls(settings: Settings) -> ClientTls:
    return ClientTls(settings.tls_ca, settings.tls_cert, settings.tls_key, settings.tls_server_name)


def tool_registry(settings: Settings) -> ToolRegistry:
    registry = ToolRegistry(BUILTINS if settings.builtin_tools else ())
    for path in filter(None, (p.strip() for p in settings.tools.split(","))):
        registry.load(path)
    for found in registry:
        if found.blocking:
            found.import_path()  # a synchronous tool must be importable by its worker process: fail at start
    return registry


def paused_run_overrides(ctx: ServiceContext) -> dict[str, float]:
    """Per-tenant paused-run TTLs in seconds from the retention file (``agent_paused_runs_days``)."""
    kept = retention.retention_of(ctx.section(retention.SECTION, retention.Settings), "agent_paused_runs")
    return {tenant: ms / 1000.0 for tenant, ms in kept.overrides.items() if ms > 0}


def in_process_channel(settings: Settings, ctx: ServiceContext) -> InProcessChannel | None:
    """The channel to the services co-hosted with the Agent, or None when it calls them over gRPC."""
    methods = ctx.local_methods
    if settings.transport != "inprocess" or methods is None:
        return None
    # Over mTLS the services see the Agent's client certificate: in process too, the same identity.
    mtls = bool(ctx.server.tls_client_ca and settings.tls_cert)
    return InProcessChannel(
        methods,
        traced=ctx.server.tracing,
        auth_context=certificate_auth_context(settings.tls_cert) if mtls else None,
        max_message_bytes=ctx.server.max_message_bytes,
    )


def mux_settings(settings: Settings) -> MuxSettings | None:
    """How the Agent multiplexes its calls to other processes, or None for unary calls (``transport=grpc``).

    The default (``inprocess``) multiplexes too: a service in another process is reached over a few
    long-lived streams per address, as issue 24 asks; ``grpc`` keeps one unary call per request."""
    if settings.transport == "grpc":
        return None
    return MuxSettings(
        streams=max(1, settings.mux_streams),
        batch=max(1, settings.mux_batch),
        max_in_flight=max(1, settings.mux_max_in_flight),
    )


def build(ctx: ServiceContext) -> HostedService:
    settings = ctx.section(SECTION, Settings)
    if settings.transport not in TRANSPORTS:
        raise ConfigError(f"LOOMFLOW_AGENT_TRANSPORT={settings.transport!r}: choose {' or '.join(TRANSPORTS)}")
    try:
        credential = ServiceCredential(ctx.auth, ctx.server.insecure or bool(settings.tls_cert))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    try:
        scripted: Model | None = load_script(settings.script_file) if settings.script_file else None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"LOOMFLOW_AGENT_SCRIPT_FILE={settings.script_file!r}: {error}") from None
    providers = ProviderSettings(
        anthropic_api_key=settings.anthropic_api_key,
        anthropic_base_url=settings.anthropic_base_url,
        openai_api_key=settings.openai_api_key,
        openai_base_url=settings.openai_base_url,
        timeout_s=settings.model_timeout_ms / 1000.0,
    )
    try:
        catalog = ModelCatalog(settings.model, providers, scripted, settings.models.split(","))
    except InvalidArgument as error:
        raise ConfigError(f"LOOMFLOW_AGENT_MODEL={settings.model!r}: {error.violations[0].description}") from None
    try:
        tools = tool_registry(settings)
    except (ImportError, AttributeError, ValueError, TypeError) as error:
        raise ConfigError(f"LOOMFLOW_AGENT_TOOLS={settings.tools!r}: {error}") from None
    slots = RunSlots(settings.run_slots)  # validates before anything starts
    limits = RunLimits(
        max_turns=settings.max_turns,
        timeout_s=settings.timeout_ms / 1000.0,
        recall_limit=settings.recall_limit,
        context_tokens=settings.context_tokens,
        recall_min_similarity=settings.recall_min_similarity,
        max_output_tokens=settings.max_output_tokens,
        system_prompt=settings.system_prompt,
        retry=RetryPolicy(attempts=max(1, settings.model_attempts), base_delay_s=settings.model_backoff_ms / 1000.0),
        seed=SeedLimits(
            history_turns=min(1000, max(0, settings.history_turns)),
            history_tokens=max(0, settings.history_tokens),
            block_tokens=max(0, settings.block_tokens),
            fact_tokens=max(0, settings.fact_tokens),
        ),
    )
    servicer = AgentServicer()
    refusals = RefusalAuditor()
    opened: list[Dependencies] = []
    opened_workers: list[ToolWorkers] = []
    loaded = load_yaml(settings.definitions_file) if settings.definitions_file else []
    for definition in loaded:
        if definition.model:
            try:
                catalog.resolve(definition.model)
            except InvalidArgument as error:
                raise ConfigError(
                    f"LOOMFLOW_AGENT_DEFINITIONS_FILE: agent {definition.name!r}: {error.violations[0].description}"
                ) from None
    store = open_agent_store(settings.store_dsn, ctx.server.data_dir, migrate=ctx.server.migrate)
    sweepers: list[Sweeper] = []
    erasers: list[Eraser] = []

    async def start() -> None:
        deps = Dependencies(
            resolve_addresses(settings, ctx),
            credential,
            settings.call_timeout_ms / 1000.0,
            ctx.server.max_message_bytes,
            client_tls(settings),
            in_process_channel(settings, ctx),
            mux_settings(settings),
            traced=ctx.server.tracing,
        )
        opened.append(deps)
        approvals = ApprovalWaiter(deps, settings.approval_timeout_ms / 1000.0, settings.approval_poll_ms / 1000.0)
        workers = ToolWorkers(
            WorkerLimits(
                settings.tool_workers,
                settings.tool_worker_memory_mb << 20,
                settings.max_tool_result_chars,
                tuple(sorted({t.import_path()[0] for t in tools if t.blocking})),
            )
        )
        if any(t.blocking for t in tools):
            await workers.start()
        opened_workers.append(workers)
        caller = ToolCaller(
            deps,
            tools,
            approvals,
            settings.max_tool_result_chars,
            workers=workers,
            tool_timeout_s=settings.tool_timeout_ms / 1000.0,
        )
        await store.start()
        book = AgentDefinitions(store, AgentDefinition(name="", tools=("*",)), settings.definitions_cache_ms / 1000.0)
        await book.load(loaded)
        pause_settings = PauseSettings(
            ttl_s=max(1, settings.pause_ttl_ms) / 1000.0,
            max_per_tenant=settings.max_paused_runs,
            max_result_chars=settings.max_caller_result_chars,
            sweep_interval_s=max(10, settings.pause_sweep_ms) / 1000.0,
            ttl_overrides_s=paused_run_overrides(ctx),
        )
        sweeper = Sweeper(store, deps, pause_settings)
        sweepers.append(sweeper)
        sweeper.start()
        pauses = Pauses(store, pause_settings, sweeper)
        servicer.runner = Runner(deps, catalog, tools, caller, limits, book, pauses, slots)
        policies = servicer.runner.policies = TenantPolicies(deps, settings.policy_cache_ms / 1000.0)
        retry = EraserSettings(
            max(1, settings.erasure_retry_ms) / 1000.0, max(1, settings.erasure_retry_max_ms) / 1000.0
        )
        eraser = Eraser(store, Steps(deps, store, policies.forget), retry)
        erasers.append(eraser)
        eraser.start()
        servicer.user_data = UserData(eraser, deps, store)
        refusals.attach(deps)

    async def stop() -> None:
        for sweeper in sweepers:
            await sweeper.stop()
        for eraser in erasers:
            await eraser.stop()
        servicer.runner = None
        servicer.user_data = None
        refusals.attach(None)
        await refusals.drain()
        for deps in opened:
            await deps.close()
        for workers in opened_workers:
            await workers.close()
        await store.close()

    def register(server: grpc.aio.Server) -> None:
        agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)

    return HostedService(
        name=SECTION,
        full_name=agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
        register=register,
        accepts_end_users=True,
        all_tenants_rpcs=frozenset({"ListTenants"}),
        on_start=[start],
        on_stop=[stop],
        on_refusal=refusals,
        backend_setting="the agent's --agent-* settings",
    )


async def _migrate(settings: Settings) -> None:
    """`loomflow migrate`: the store's own start-up, which applies the migrations."""
    from loomflow.agent.store.postgres import PostgresAgentStore  # the postgres extra

    store = PostgresAgentStore(settings.store_dsn, pool_size=1)
    await store.start()
    await store.close()


MIGRATIONS = migrations.Declared("store_dsn", _migrate)
