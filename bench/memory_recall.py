"""Memory Recall speed per backend at 1,000 and 10,000 users: directly on the store and through gRPC.

    python -m bench memory_recall                          # 1,000 users x 100 episodes, every backend
    python -m bench memory_recall --full                   # 1,000 and 10,000 users x 100 episodes
    python -m bench memory_recall --users 1000,10000 --episodes 20 --backends sqlite,memory

Each dataset (users x episodes) lives in its own store: a SQLite file and a Chroma folder under
--data-dir, a Postgres database ``loomflow_bench_<users>x<episodes>`` on --postgres-dsn, a Redis
database (index 10, 11, ...) on --redis-url. Persistent datasets are loaded once and reused by
later runs (a marker block records what was loaded); the in-memory backend loads every run.
Loading uses ``remember_many`` (one call per user), with the ``--embedder`` of the stores and servers
(default: the service default); episode vectors are computed at write time, and the cost of embedding
one query (part of every Recall) is measured and reported as ``query_embedding``. Episodes are
synthetic turns (8-30 words each side, Zipf-distributed vocabulary of 20,000 words); queries are
3-8 words, half taken from the queried user's own episodes.

Direct: the store in this process. Every user is recalled once first (a cold recall builds
the tenant's in-process index; reported as ``cold``), then ``--queries`` recalls of random
users are timed one at a time (``warm``: p50/p99, and recalls per second of one caller), and
again with ``--concurrency`` in flight (``concurrent``: throughput).
gRPC: ``loomflow serve --services memory`` runs as its own process on the same store (loaded
first when a ``--via grpc`` run finds it empty; the in-memory backend is loaded through Remember
RPCs), once per ``--workers`` count (default 1 and 2 processes sharing the port, side by side; one on
the in-process backends). This process recalls every user once (warm-up) and times the one-at-a-time
calls on the one-process server; the concurrent phase sends the same kind of queries with ghz (a Go
load generator, ``--concurrency`` in flight over ``--connections``), round by round alternating the
worker counts, each getting the same calls (``--client python``: this process's grpc.aio client on one
channel, one process, as before). The servers' CPU time (their process trees, from /proc) is read
around each round, so ``server_cpu_ms_per_recall`` and ``recalls_per_server_cpu_second`` show
capacity on a shared machine; ``client_cpu_ms_per_recall`` is ghz's. In the same rounds ghz also sends
as many health checks and Recalls of users who stored nothing (``floor_by_workers``, see FLOORS; ``--no-floors``
skips them): what this machine allows any RPC, and any Recall, under the same load.

The sizes are measured side by side so machine noise hits both alike: one call at a time
alternating the datasets call by call (``warm``), and in interleaved rounds (1k, 10k, 1k, ...)
with calls in flight (``concurrent``).

Targets: p99 at 10,000 users within 1.2x of p99 at 1,000 users on every backend, direct and
through gRPC, one call at a time (the concurrent ratio is reported too: under load its p99 is
mostly queueing); and >= 2,000 Recall/s on SQLite through gRPC (judged on the most workers measured;
the JSON keeps every worker count's figure under ``concurrent_by_workers``).
Results: bench/results/memory_recall.json and memory_recall.png (memory_recall_full.* with --full;
--results-name to choose). Exits non-zero when a target is missed (the figures are kept either way).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health_pb2

from bench.ghz_load import HEALTH_CHECK_RPC, describe, run_ghz_async, write_health_protoset
from bench.harness import (
    LatencyStats,
    latency_stats,
    machine,
    plot_path,
    progress,
    rss_kib,
    run_load,
    write_results,
)
from loomflow.kernel.errors import NotFound
from loomflow.memory.models import BlockWrite, EpisodeDraft, ForgetScope, RecallQuery, now_micros
from loomflow.memory.recall.embedding import Embedder
from loomflow.memory.recall.factory import DEFAULT_EMBEDDER, EmbedderOptions, open_embedder
from loomflow.memory.store import MemoryStore, open_store
from loomflow.testing import databases
from loomflow.testing.processes import ServeProcess
from loomflow.v1 import memory_pb2, memory_pb2_grpc, tenancy_pb2

K = TypeVar("K")  # what the measured series are keyed by: a dataset, or a dataset, a worker count and a load
BACKENDS = ("memory", "sqlite", "postgres", "redis", "chroma")
TARGET_P99_RATIO = 1.2
TARGET_SQLITE_RECALLS_PER_SECOND = 2_000.0
MARKER = "__bench_marker__"
LOAD_PARALLEL_USERS = 32
CHROMA_SKIP_REASON = (
    "embedded Chroma keeps every collection it has touched in memory, about 2.8 MiB each (measured; "
    "its LRU segment-cache setting did not lower it), and each tenant is a collection: 10,000 tenants "
    "would need ~28 GiB in one process, more than this shared machine can give"
)


# -- the synthetic workload ------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    users: int
    episodes: int

    @property
    def name(self) -> str:
        return f"{self.users}x{self.episodes}"

    def tenant(self, user: int) -> str:
        return f"bench-user-{user}"


class Corpus:
    """Deterministic synthetic texts: a pool of turns and queries drawn from it."""

    def __init__(self, seed: int = 7, pool: int = 20_000) -> None:
        rng = random.Random(seed)
        syllables = ["ka", "lo", "mi", "ter", "vo", "sun", "ra", "pe", "dal", "qui", "zen", "bo", "ni", "sha"]
        vocabulary = sorted({"".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(30_000)})[:20_000]
        weights = [1.0 / (rank + 1) for rank in range(len(vocabulary))]
        self._texts = [" ".join(rng.choices(vocabulary, weights, k=rng.randint(8, 30))) for _ in range(pool)]
        self._rng = random.Random(seed + 1)

    def turn(self, dataset: Dataset, user: int, index: int) -> tuple[str, str]:
        base = (user * 7919 + index * 104729) % len(self._texts)
        return self._texts[base], self._texts[(base * 31 + 17) % len(self._texts)]

    def query(self, dataset: Dataset, user: int) -> str:
        if self._rng.random() < 0.5:
            words = self.turn(dataset, user, self._rng.randrange(dataset.episodes))[0].split()
        else:
            words = self._texts[self._rng.randrange(len(self._texts))].split()
        start = self._rng.randrange(max(1, len(words) - 8))
        return " ".join(words[start : start + self._rng.randint(3, 8)])

    def queries(self, dataset: Dataset, count: int) -> list[tuple[int, str]]:
        users = [self._rng.randrange(dataset.users) for _ in range(count)]
        return [(user, self.query(dataset, user)) for user in users]


# -- where each dataset lives ------------------------------------------------------


def dsn_for(backend: str, dataset: Dataset, index: int, args: argparse.Namespace) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite://{args.data_dir}/sqlite-{dataset.name}-{args.embedder}.db"
    if backend == "chroma":
        return f"chroma://{args.data_dir}/chroma-{dataset.name}-{args.embedder}"
    if backend == "postgres":
        return databases.with_database(str(args.postgres_dsn), f"loomflow_bench_{dataset.name}")
    return databases.with_database(str(args.redis_url), str(args.redis_db_base + index))


async def prepare_location(backend: str, dsn: str, args: argparse.Namespace) -> None:
    if backend == "postgres":
        import asyncpg

        conn = await asyncpg.connect(args.postgres_dsn)
        try:
            name = urlsplit(dsn).path.lstrip("/")
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
    elif backend in ("sqlite", "chroma"):
        os.makedirs(args.data_dir, exist_ok=True)  # once, before anything is timed


def marker(dataset: Dataset, embedder: str) -> str:
    """What a loaded dataset's marker block says: its size and the embedder its vectors are from."""
    return f"{dataset.name} {embedder}"


async def already_loaded(store: MemoryStore, dataset: Dataset, embedder: str) -> bool:
    try:
        block = await store.get_block(MARKER, "", "dataset")
    except NotFound:
        return False
    return block.content == marker(dataset, embedder)


async def load_direct(
    store: MemoryStore, dataset: Dataset, corpus: Corpus, label: str, embedder: str
) -> dict[str, Any]:
    if await already_loaded(store, dataset, embedder):
        return {"reused": True}
    # A persistent store holding another or a partial load: start the dataset's tenants afresh.
    started = time.perf_counter()
    for first in progress(range(0, dataset.users, LOAD_PARALLEL_USERS), label=f"load {label}"):
        users = range(first, min(first + LOAD_PARALLEL_USERS, dataset.users))
        await asyncio.gather(*(_load_user(store, dataset, corpus, user) for user in users))
    await store.put_block(MARKER, BlockWrite("dataset", "", marker(dataset, embedder)), now_micros())
    seconds = time.perf_counter() - started
    count = dataset.users * dataset.episodes
    return {"reused": False, "episodes": count, "seconds": round(seconds, 1), "per_second": round(count / seconds)}


async def _load_user(store: MemoryStore, dataset: Dataset, corpus: Corpus, user: int) -> None:
    tenant = dataset.tenant(user)
    await store.forget(tenant, ForgetScope(), now_micros())  # whatever an interrupted load left
    drafts = [EpisodeDraft(f"s{index % 5}", *corpus.turn(dataset, user, index)) for index in range(dataset.episodes)]
    await store.remember_many(tenant, drafts, now_micros())


# -- measuring -----------------------------------------------------------------------


async def query_embedding_cost(kind: str, dataset: Dataset, corpus: Corpus, count: int = 2000) -> dict[str, Any]:
    """What embedding one Recall's query costs in process (part of every Recall's server time)."""
    embedder = open_embedder(EmbedderOptions(kind=kind))
    await embedder.start()
    queries = [corpus.query(dataset, user % dataset.users) for user in range(count)]
    started = time.perf_counter()
    for text in queries:
        await embedder.embed_texts([text])
    per_query = (time.perf_counter() - started) / count
    await embedder.close()
    return {"embedder": embedder.name, "queries": count, "us_per_query": round(per_query * 1e6, 1)}


class _Context:
    """What the kernel pipeline reads of a grpc.aio context, for timing it without a socket."""

    def invocation_metadata(self) -> tuple[Any, ...]:
        return ()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:0"

    def code(self) -> None:
        return None

    async def abort(self, *args: Any) -> None:
        raise RuntimeError(f"the pipeline refused a bench Recall: {args}")


async def recall_steps(dataset: Dataset, corpus: Corpus, args: argparse.Namespace, batch: int = 500) -> dict[str, Any]:
    """Server CPU of one SQLite Recall by step, in this process (thread CPU time, the fastest of
    several batches, the steps interleaved: robust on a loaded machine). Each step includes the ones
    above it in the list (kernel_validate is part of kernel_pipeline only);
    what is left of a gRPC Recall's server CPU is grpc.aio, the event loop and the poller hand-off."""
    from loomflow.kernel.interceptor import KernelInterceptor
    from loomflow.kernel.validation import validate
    from loomflow.memory.recall.index import prepare
    from loomflow.memory.servicer import MemoryServicer

    embedder = open_embedder(EmbedderOptions(kind=args.embedder))
    await embedder.start()
    store = open_store(dsn_for("sqlite", dataset, 0, args), args.data_dir, embedder=embedder)
    await store.start()
    try:
        await load_direct(store, dataset, corpus, f"sqlite {dataset.name}", embedder.name)
        servicer = MemoryServicer(store, embedder=embedder)
        service = memory_pb2.DESCRIPTOR.services_by_name["MemoryService"].full_name
        kernel = KernelInterceptor(None, {service}, insecure=True)
        plain: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(servicer.Recall)
        pipeline = kernel.wrap(service, "Recall", plain).unary_unary
        assert pipeline is not None
        queries = corpus.queries(dataset, batch * 8)
        for user in range(dataset.users):  # every tenant's index built, the word caches warm
            await store.recall(dataset.tenant(user), RecallQuery(text="warm up", limit=5))
        for user, text in queries:
            await store.recall(dataset.tenant(user), RecallQuery(text=text, limit=5))
        requests = [
            memory_pb2.RecallRequest(scope=tenancy_pb2.UserScope(user_id=dataset.tenant(u)), query=q, limit=5)
            for u, q in queries
        ]
        wire = [r.SerializeToString() for r in requests]
        context: Any = _Context()  # stands in for grpc.aio.ServicerContext

        async def embed(i: int) -> None:
            await embedder.embed_texts([queries[i][1]])

        async def prepared(i: int) -> None:
            await prepare(queries[i][1], embedder)

        async def validated(i: int) -> None:
            validate(requests[i])

        async def stored(i: int) -> None:
            await store.recall(dataset.tenant(queries[i][0]), RecallQuery(text=queries[i][1], limit=5))

        async def served(i: int) -> None:
            await servicer.Recall(requests[i], context)

        async def piped(i: int) -> None:
            request = memory_pb2.RecallRequest.FromString(wire[i])
            (await pipeline(request, context)).SerializeToString()

        named = (
            ("query_embedding", embed),
            ("prepare_query (embedding + BM25 terms)", prepared),
            ("kernel_validate (protovalidate + JSON depth)", validated),
            ("store_recall (prepare + rank + SQLite reads)", stored),
            ("servicer_recall (+ the answer, metrics)", served),
            ("kernel_pipeline (+ decode, admit, record, encode)", piped),
        )
        fastest = {name: float("inf") for name, _ in named}
        for first in range(0, len(queries), batch):  # steps interleaved batch by batch: noise hits each alike
            for name, step in named:
                began = time.thread_time()
                for i in range(first, first + batch):
                    await step(i)
                fastest[name] = min(fastest[name], (time.thread_time() - began) / batch)
        steps = {name: round(seconds * 1e6, 1) for name, seconds in fastest.items()}
        return {"us_per_recall": steps, "embedder": embedder.name, "batches": len(queries) // batch, "batch": batch}
    finally:
        await store.close()
        await embedder.close()


def direct_recall(store: MemoryStore, tenant: str, text: str) -> Callable[[], Awaitable[Any]]:
    return lambda: store.recall(tenant, RecallQuery(text=text, limit=5))


def recall_request(tenant: str, text: str) -> memory_pb2.RecallRequest:
    return memory_pb2.RecallRequest(scope=tenancy_pb2.UserScope(user_id=tenant), query=text, limit=5)


def rpc_recall(stub: Any, tenant: str, text: str) -> Callable[[], Awaitable[Any]]:
    request = recall_request(tenant, text)
    return lambda: stub.Recall(request)


async def timed(calls: Sequence[Callable[[], Awaitable[Any]]], concurrency: int) -> tuple[list[float], float]:
    """Runs the calls with ``concurrency`` in flight; returns per-call latencies and the wall time."""
    latencies: list[float] = []
    queue = iter(calls)

    async def worker() -> None:
        for call in queue:
            began = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - began)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


def stats(latencies: list[float], seconds: float) -> dict[str, float]:
    return latency_stats(latencies, seconds).as_dict()


async def interleaved(
    sizes: Sequence[K],
    run_round: Callable[[K, int], Awaitable[tuple[list[float], float]]],
    rounds: int,
    before: Callable[[], Any] | None = None,
    after: Callable[[K, float], None] | None = None,
) -> dict[K, LatencyStats]:
    """Alternates the datasets round by round, so noise on a shared machine hits each alike.
    ``run_round`` runs one round's calls on a dataset and returns their latencies and wall time."""
    latencies: dict[K, list[float]] = {d: [] for d in sizes}
    walls: dict[K, float] = {d: 0.0 for d in sizes}
    for round_number in range(rounds):
        for dataset in sizes:
            if before is not None:
                before()
            taken, wall = await run_round(dataset, round_number)
            latencies[dataset] += taken
            walls[dataset] += wall
            if after is not None:
                after(dataset, wall)
    return {d: latency_stats(latencies[d], walls[d]) for d in sizes}


async def alternating(
    sizes: Sequence[K],
    make_calls: Callable[[K, int], list[Callable[[], Awaitable[Any]]]],
    rounds: int,
) -> dict[K, LatencyStats]:
    """One call at a time, alternating the datasets call by call: the fairest p50/p99 comparison on a
    shared machine. Throughput is calls over the time spent in that dataset's calls."""
    latencies: dict[K, list[float]] = {d: [] for d in sizes}
    for round_number in range(rounds):
        batches = [(d, make_calls(d, round_number)) for d in sizes]
        for position in range(max(len(calls) for _, calls in batches)):
            for dataset, calls in batches:
                if position < len(calls):
                    began = time.perf_counter()
                    await calls[position]()
                    latencies[dataset].append(time.perf_counter() - began)
    return {d: latency_stats(latencies[d], sum(latencies[d])) for d in sizes}


async def open_dataset(
    backend: str, dataset: Dataset, index: int, args: argparse.Namespace, embedder: Embedder
) -> MemoryStore:
    """The started store of one dataset (its database or folder created first if need be)."""
    dsn = dsn_for(backend, dataset, index, args)
    await prepare_location(backend, dsn, args)
    store = open_store(dsn, args.data_dir, embedder=embedder)
    await store.start()
    return store


async def measure_direct(
    backend: str, sizes: Sequence[Dataset], corpus: Corpus, args: argparse.Namespace
) -> dict[str, Any]:
    stores: dict[Dataset, MemoryStore] = {}
    report: dict[str, Any] = {}
    embedder = open_embedder(EmbedderOptions(kind=args.embedder))
    await embedder.start()
    try:
        for index, dataset in enumerate(sizes):
            store = stores[dataset] = await open_dataset(backend, dataset, index, args, embedder)
            label = f"{backend} {dataset.name}"
            report[dataset.name] = {"load": await load_direct(store, dataset, corpus, label, embedder.name)}
            print(f"  {backend} {dataset.name}: load {report[dataset.name]['load']}", file=sys.stderr)
        for dataset, store in stores.items():
            cold = [direct_recall(store, dataset.tenant(u), "warm up") for u in range(dataset.users)]
            latencies, wall = await timed(cold, 1)
            report[dataset.name]["cold"] = stats(latencies, wall)

        def calls(dataset: Dataset, round_number: int) -> list[Callable[[], Awaitable[Any]]]:
            store = stores[dataset]
            return [
                direct_recall(store, dataset.tenant(user), text)
                for user, text in corpus.queries(dataset, args.queries // args.rounds)
            ]

        for dataset, result in (await alternating(sizes, calls, args.rounds)).items():
            report[dataset.name]["warm"] = result.as_dict()

        async def concurrently(dataset: Dataset, round_number: int) -> tuple[list[float], float]:
            return await timed(calls(dataset, round_number), args.concurrency)

        for dataset, result in (await interleaved(sizes, concurrently, args.rounds)).items():
            report[dataset.name]["concurrent"] = result.as_dict()
    finally:
        for store in stores.values():
            await store.close()
    return report


async def _rpc_load(stub: Any, dataset: Dataset, corpus: Corpus, label: str) -> dict[str, Any]:
    started = time.perf_counter()

    async def user_load(user: int) -> None:
        scope = tenancy_pb2.UserScope(user_id=dataset.tenant(user))
        for index in range(dataset.episodes):
            text_in, text_out = corpus.turn(dataset, user, index)
            await stub.Remember(
                memory_pb2.RememberRequest(scope=scope, session_id=f"s{index % 5}", input=text_in, output=text_out)
            )

    for first in progress(range(0, dataset.users, 64), label=f"load {label} via gRPC"):
        await asyncio.gather(*(user_load(u) for u in range(first, min(first + 64, dataset.users))))
    seconds = time.perf_counter() - started
    count = dataset.users * dataset.episodes
    return {"reused": False, "episodes": count, "seconds": round(seconds, 1), "per_second": round(count / seconds)}


async def ensure_loaded(
    backend: str, sizes: Sequence[Dataset], corpus: Corpus, args: argparse.Namespace
) -> dict[str, Any]:
    """Loads (or finds loaded) each persistent dataset before its server starts: a ``--via grpc`` run
    on a fresh --data-dir would otherwise recall from an empty store (an earlier comparison did:
    its 'before' figure was an empty SQLite file's)."""
    loads: dict[str, Any] = {}
    embedder = open_embedder(EmbedderOptions(kind=args.embedder))
    await embedder.start()
    try:
        for index, dataset in enumerate(sizes):
            store = await open_dataset(backend, dataset, index, args, embedder)
            try:
                label = f"{backend} {dataset.name}"
                loads[dataset.name] = await load_direct(store, dataset, corpus, label, embedder.name)
            finally:
                await store.close()
    finally:
        await embedder.close()
    return loads


RECALL_RPC = "loomflow.v1.MemoryService.Recall"
FLOORS = ("health", "empty")
"""Loads measured beside Recall, same calls in flight, same rounds (``floor_by_workers``): ``health``, the
standard health check (gRPC with no work of ours: what this machine allows any RPC); ``empty``, a Recall
of a user who stored nothing (the whole kernel and handler, no index to search, no hit to send)."""


FLOOR_LABELS = {"health": "health check", "empty": "Recall, nothing stored"}


def empty_tenant(user: int) -> str:
    return f"bench-nobody-{user}"


def server_cpu_seconds(pid: int) -> float:
    """CPU time of a server process and its descendants (a ``--workers`` supervisor's workers), read
    from ``/proc/<pid>/stat`` (utime + stime)."""
    import psutil

    try:
        pids = [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return 0.0
    ticks = 0
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended between the listing and the read
        ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15 of the line: utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def worker_counts(backend: str, args: argparse.Namespace) -> list[int]:
    """The ``--workers`` counts this backend's servers run with (one process on backends whose state
    lives in the process: the server refuses more)."""
    counts = sorted({int(w) for w in str(args.workers).split(",") if w.strip()})
    if backend in ("memory", "chroma"):
        return [1]
    if args.client == "python":
        return [1]  # one channel reaches one worker
    return counts


def measure_grpc(backend: str, sizes: Sequence[Dataset], corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    counts = worker_counts(backend, args)
    health_protoset = write_health_protoset(Path(tempfile.mkdtemp(prefix="loomflow-bench-")) / "health.protoset")
    servers: dict[tuple[Dataset, int], ServeProcess] = {}
    report: dict[str, Any] = {d.name: {} for d in sizes}
    if backend != "memory":  # the in-memory backend is loaded through Remember RPCs below
        for name, load in asyncio.run(ensure_loaded(backend, sizes, corpus, args)).items():
            report[name]["load"] = load
    try:
        for index, dataset in enumerate(sizes):
            for workers in counts:
                env = {
                    "LOOMFLOW_MEMORY_DSN": dsn_for(backend, dataset, index, args),
                    "LOOMFLOW_INSECURE": "true",
                    "LOOMFLOW_TRACING": "true" if args.tracing else "false",
                    "LOOMFLOW_MEMORY_EMBEDDER": args.embedder,
                    "LOOMFLOW_WORKERS": str(workers),
                }
                serve = ServeProcess("memory", Path(args.data_dir) / "serve", env=env)
                servers[(dataset, workers)] = serve.start(timeout=120)
        pids = {key: s.process.pid for key, s in servers.items() if s.process is not None}
        one = counts[0]

        async def run() -> None:
            channels = {d: grpc.aio.insecure_channel(servers[(d, one)].address) for d in sizes}
            stubs = {d: memory_pb2_grpc.MemoryServiceStub(c) for d, c in channels.items()}
            try:
                for dataset, stub in stubs.items():
                    if backend == "memory":
                        report[dataset.name]["load"] = await _rpc_load(stub, dataset, corpus, dataset.name)
                    warm = [rpc_recall(stub, dataset.tenant(u), "warm up") for u in range(dataset.users)]
                    latencies, wall = await timed(warm, args.concurrency)
                    report[dataset.name]["cold"] = stats(latencies, wall)
                    for workers in counts[1:]:
                        # Each worker builds its own indexes, and which worker a connection reaches is the
                        # kernel's choice, drawn again for each ghz run's connections: several runs, each
                        # recalling every user often enough that every worker reached has seen it.
                        requests = [recall_request(dataset.tenant(u), "warm up") for u in range(dataset.users)]
                        address = servers[(dataset, workers)].address
                        for _ in range(4):
                            await run_ghz_async(
                                RECALL_RPC, address, requests * 2 * workers, args.concurrency, args.connections
                            )

                def calls(dataset: Dataset, round_number: int) -> list[Callable[[], Awaitable[Any]]]:
                    return [
                        rpc_recall(stubs[dataset], dataset.tenant(user), text)
                        for user, text in corpus.queries(dataset, args.queries // args.rounds)
                    ]

                loads = ["recall", *(FLOORS if args.floors and args.client == "ghz" else ())]
                keys = [(d, w, load) for d in sizes for w in counts for load in loads]
                cpu: dict[tuple[Dataset, int, str], float] = {k: 0.0 for k in keys}
                client_cpu: dict[tuple[Dataset, int, str], float] = {k: 0.0 for k in keys}
                marks: dict[tuple[Dataset, int], float] = {}

                def before() -> None:
                    for server, pid in pids.items():
                        marks[server] = server_cpu_seconds(pid)

                def after(key: tuple[Dataset, int, str], wall: float) -> None:
                    cpu[key] += server_cpu_seconds(pids[key[:2]]) - marks[key[:2]]

                before()
                warm_keys = [(d, one, "recall") for d in sizes]
                for key, result in (await alternating(warm_keys, lambda k, r: calls(k[0], r), args.rounds)).items():
                    after(key, 0.0)
                    report[key[0].name]["warm"] = {**result.as_dict(), "server_cpu_seconds": round(cpu[key], 2)}
                cpu = {k: 0.0 for k in keys}
                round_queries: dict[tuple[Dataset, int], list[tuple[int, str]]] = {}

                def queries(dataset: Dataset, round_number: int) -> list[tuple[int, str]]:
                    if (dataset, round_number) not in round_queries:  # the same calls for every worker count
                        round_queries[dataset, round_number] = corpus.queries(dataset, args.queries // args.rounds)
                    return round_queries[dataset, round_number]

                async def one_round(key: tuple[Dataset, int, str], round_number: int) -> tuple[list[float], float]:
                    dataset, _, load = key
                    if args.client == "python":
                        return await timed(calls(dataset, round_number), args.concurrency)
                    texts = queries(dataset, round_number)
                    address = servers[key[:2]].address
                    if load == "health":
                        requests: list[Any] = [health_pb2.HealthCheckRequest()] * len(texts)
                        done = await run_ghz_async(
                            HEALTH_CHECK_RPC, address, requests, args.concurrency, args.connections, health_protoset
                        )
                    else:
                        # "empty": the same query texts for users who never stored anything
                        tenant = dataset.tenant if load == "recall" else empty_tenant
                        requests = [recall_request(tenant(u), q) for u, q in texts]
                        done = await run_ghz_async(RECALL_RPC, address, requests, args.concurrency, args.connections)
                    client_cpu[key] += done.client_cpu_seconds
                    return done.latencies_s, done.wall_seconds

                measured = await interleaved(keys, one_round, args.rounds, before, after)
                generator = (
                    f"python grpc.aio, {args.concurrency} in flight on one channel"
                    if args.client == "python"
                    else describe(args.concurrency, args.connections)
                )
                for key, result in measured.items():
                    dataset, workers, load = key
                    if load != "recall":
                        floor = report[dataset.name].setdefault("floor_by_workers", {}).setdefault(str(workers), {})
                        floor[load] = {
                            "per_second": round(result.per_second, 1),
                            "server_cpu_ms_per_call": round(1e3 * cpu[key] / max(result.count, 1), 3),
                            "client_cpu_ms_per_call": round(1e3 * client_cpu[key] / max(result.count, 1), 3),
                        }
                        continue
                    entry: dict[str, Any] = result.as_dict()
                    entry["load_generator"] = generator
                    entry["workers"] = workers
                    entry["server_cpu_seconds"] = round(cpu[key], 2)
                    entry["recalls_per_server_cpu_second"] = round(result.count / max(cpu[key], 1e-9))
                    entry["server_cpu_ms_per_recall"] = round(1e3 * cpu[key] / max(result.count, 1), 3)
                    if args.client != "python":
                        entry["client_cpu_ms_per_recall"] = round(1e3 * client_cpu[key] / max(result.count, 1), 3)
                    report[dataset.name].setdefault("concurrent_by_workers", {})[str(workers)] = entry
                    if workers == counts[-1]:
                        report[dataset.name]["concurrent"] = entry  # the headline: the most workers measured
                for dataset in sizes:
                    process = servers[(dataset, one)].process
                    if process is not None:
                        report[dataset.name]["server_rss_mib"] = round(rss_kib(process.pid) / 1024)
            finally:
                for channel in channels.values():
                    await channel.close()

        run_load(run())
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(health_protoset.parent, ignore_errors=True)
    return report


# -- targets, plot, main ----------------------------------------------------------------


def merged(
    results_name: str, results: dict[str, Any], conditions: dict[str, Any], sizes: Sequence[Dataset]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """This run's backends over an earlier run's others (only when that run measured the same sizes)."""
    path = plot_path(results_name).with_suffix(".json")
    if not path.exists():
        return results, conditions
    earlier = json.loads(path.read_text())
    settings = earlier.get("settings", {})
    if settings.get("users") != [d.users for d in sizes] or settings.get("episodes_per_user") != sizes[0].episodes:
        return results, conditions
    kept = {b: r for b, r in earlier.get("results", {}).items() if b not in results}
    kept_conditions = {
        b: {"server_tracing": settings.get("server_tracing"), **c}
        for b, c in earlier.get("conditions_per_backend", {}).items()
        if b in kept
    }
    combined, combined_conditions = {**kept, **results}, {**kept_conditions, **conditions}
    return {b: combined[b] for b in BACKENDS if b in combined}, combined_conditions


def check_targets(results: dict[str, Any], sizes: Sequence[Dataset]) -> tuple[dict[str, Any], list[str]]:
    verdicts: dict[str, Any] = {"p99_ratio": {}, "sqlite_recalls_per_second": None}
    missed: list[str] = []
    if len(sizes) >= 2:
        small, large = sizes[0].name, sizes[-1].name
        for backend, modes in results.items():
            for via in ("direct", "grpc"):
                runs = modes.get(via, {})
                if small not in runs or large not in runs:
                    if runs:
                        verdicts["p99_ratio"][f"{backend} {via}"] = f"not measured: no {large} run (see skipped)"
                    continue
                for mode in ("warm", "concurrent"):
                    ratio = runs[large][mode]["p99_ms"] / max(runs[small][mode]["p99_ms"], 1e-9)
                    verdicts["p99_ratio"][f"{backend} {via} {mode}"] = round(ratio, 3)
                    if mode == "warm" and ratio > TARGET_P99_RATIO:
                        missed.append(
                            f"{backend} {via} {mode}: p99 {large} / {small} = {ratio:.2f} > {TARGET_P99_RATIO}"
                        )
    sqlite = results.get("sqlite", {}).get("grpc", {})
    if sqlite:
        name, slowest = min(sqlite.items(), key=lambda item: item[1]["concurrent"]["per_second"])
        throughput = slowest["concurrent"]["per_second"]
        verdicts["sqlite_recalls_per_second"] = throughput
        floor = slowest.get("floor_by_workers", {}).get(str(slowest["concurrent"].get("workers")), {})
        if floor:
            verdicts["sqlite_floors_per_second"] = {load: f["per_second"] for load, f in floor.items()}
        if throughput < TARGET_SQLITE_RECALLS_PER_SECOND:
            short = TARGET_SQLITE_RECALLS_PER_SECOND - throughput
            floors = "".join(f"; {load} {f['per_second']:.0f}/s" for load, f in floor.items())
            missed.append(
                f"sqlite grpc: {throughput:.0f} Recall/s < target {TARGET_SQLITE_RECALLS_PER_SECOND:.0f} "
                f"(short by {short:.0f}/s, {100 * throughput / TARGET_SQLITE_RECALLS_PER_SECOND:.0f} % of it)"
                + (f" [{name}, same load and workers side by side{floors}]" if floor else "")
            )
    return verdicts, missed


def plot(results_name: str, results: dict[str, Any], sizes: Sequence[Dataset], info: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = list(results)
    series = [(via, d.name) for via in ("direct", "grpc") for d in sizes]
    colors = ["#4c72b0", "#8fa9d6", "#dd8452", "#f0b48a", "#55a868", "#8fd19e"]
    figure, axes = plt.subplots(1, 3, figsize=(17, 5))
    width = 0.8 / len(series)
    panels = (
        ("warm", "p99_ms", "p99 latency, one call at a time (ms)"),
        ("warm", "p50_ms", "p50 latency, one call at a time (ms)"),
        ("concurrent", "per_second", "Recall/s with calls in flight"),
    )
    for axis, (mode, field, title) in zip(axes, panels, strict=True):
        for k, (via, name) in enumerate(series):
            xs = [b + (k - len(series) / 2 + 0.5) * width for b in range(len(backends))]
            found = [results[b].get(via, {}).get(name, {}).get(mode, {}).get(field) for b in backends]
            users = name.split("x")[0]
            ys = [0.0 if y is None else y for y in found]
            bars = axis.bar(xs, ys, width, label=f"{via}, {users} users", color=colors[k % len(colors)])
            fmt = "{:.2f}" if field != "per_second" else "{:.0f}"
            labels = ["not measured" if y is None else fmt.format(y) for y in found]
            axis.bar_label(bars, labels=labels, fontsize=6, rotation=90)
        axis.set_xticks(range(len(backends)), backends)
        axis.set_title(title)
        axis.legend(fontsize=7)
    if "sqlite" in backends:
        x = backends.index("sqlite")
        axes[2].hlines(TARGET_SQLITE_RECALLS_PER_SECOND, x - 0.45, x + 0.45, colors="red", linestyles="dashed")
        # The floors measured side by side (most workers): what any RPC, and any Recall, reach here.
        run = results["sqlite"].get("grpc", {}).get(sizes[0].name, {})
        floor = run.get("floor_by_workers", {}).get(str(run.get("concurrent", {}).get("workers")), {})
        for load, style in (("health", "dotted"), ("empty", "dashdot")):
            if load in floor:
                rate = floor[load]["per_second"]
                axes[2].hlines(rate, x - 0.45, x + 0.45, colors="grey", linestyles=style)
                label = f"{FLOOR_LABELS[load]} {rate:,.0f}/s"
                axes[2].annotate(label, (x - 0.44, rate), xytext=(0, 2), textcoords="offset points", fontsize=7)
    figure.suptitle(
        f"Memory Recall, {sizes[0].episodes} episodes per user; {info['cpus']} CPUs shared, "
        f"load {info['load_average_1m']} at start (red dashes: SQLite target; grey: floors side by side)"
    )
    figure.tight_layout()
    path = plot_path(results_name)
    figure.savefig(path, dpi=110)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--users", default="1000", help="comma-separated user counts (--full: 1000,10000)")
    parser.add_argument("--full", action="store_true", help="measure 1,000 and 10,000 users")
    parser.add_argument("--episodes", type=int, default=100, help="episodes per user")
    parser.add_argument("--queries", type=int, default=6_000, help="timed recalls per size and mode")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds the queries are split into")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight for the concurrent runs")
    parser.add_argument("--via", default="direct,grpc", help="direct, grpc or both")
    parser.add_argument(
        "--client",
        choices=("ghz", "python"),
        default="ghz",
        help="load generator of the gRPC concurrent phase: ghz (Go, little client CPU) or this process's "
        "grpc.aio client (shares the cores with the server it measures; one worker only)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=8,
        help="ghz: connections the calls spread over (the kernel assigns each to a worker: with 8, all on one "
        "of two workers has odds 1 in 128)",
    )
    parser.add_argument(
        "--workers",
        default="",
        help="comma-separated `loomflow serve --workers` counts of the gRPC servers, measured side by side "
        "(SQLite, Postgres, Redis; the concurrent figure judged is the last; default 1,2, with --full 1)",
    )
    parser.add_argument(
        "--floors",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ghz: also measure, side by side, a health check and a Recall of users with nothing stored (the "
        "floors under a Recall's rate on this machine)",
    )
    parser.add_argument(
        "--tracing",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="server tracing (off like the other benches)",
    )
    parser.add_argument("--data-dir", default=os.environ.get("LOOMFLOW_BENCH_DIR", "/tmp/loomflow-bench-memory"))
    parser.add_argument("--postgres-dsn", default=os.environ.get("LOOMFLOW_TEST_POSTGRES_DSN", ""))
    parser.add_argument("--redis-url", default=os.environ.get("LOOMFLOW_TEST_REDIS_URL", ""))
    parser.add_argument("--chroma-max-users", type=int, default=1000, help="largest dataset measured on Chroma")
    parser.add_argument(
        "--merge", action="store_true", help="keep earlier results (same sizes) of backends not measured now"
    )
    parser.add_argument("--redis-db-base", type=int, default=10, help="first Redis database index the bench uses")
    parser.add_argument(
        "--results-name",
        default="",
        help="bench/results/<name>.json and .png (default: memory_recall, or memory_recall_full with --full)",
    )
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="--memory-embedder of the stores and servers")
    parser.add_argument(
        "--steps",
        action="store_true",
        help="only: server CPU of one SQLite Recall by step, in process (bench/results/memory_recall_steps.json)",
    )
    args = parser.parse_args()

    args.workers = args.workers or ("1" if args.full else "1,2")
    sizes = [Dataset(int(u), args.episodes) for u in ("1000,10000" if args.full else args.users).split(",")]
    results_name = args.results_name or ("memory_recall_full" if args.full else "memory_recall")
    corpus = Corpus()
    if args.steps:
        os.makedirs(args.data_dir, exist_ok=True)
        steps = asyncio.run(recall_steps(sizes[0], corpus, args))
        print(json.dumps(steps, indent=2), file=sys.stderr)
        print(f"results: {write_results('memory_recall_steps', steps)}", file=sys.stderr)
        return 0
    info = machine()
    results: dict[str, Any] = {}
    conditions: dict[str, Any] = {}  # machine facts (load!) when each backend was measured
    skipped: dict[str, str] = {}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if (backend == "postgres" and not args.postgres_dsn) or (backend == "redis" and not args.redis_url):
            print(f"skipping {backend}: no server configured (see --help)", file=sys.stderr)
            continue
        backend_sizes = [d for d in sizes if backend != "chroma" or d.users <= args.chroma_max_users]
        for dataset in sizes:
            if dataset not in backend_sizes:
                skipped[f"{backend} {dataset.name}"] = CHROMA_SKIP_REASON
                print(f"skipping {backend} {dataset.name}: {CHROMA_SKIP_REASON}", file=sys.stderr)
        results[backend] = {}
        conditions[backend] = {**machine(), "server_tracing": args.tracing}
        if "direct" in args.via:
            print(f"{backend}: direct", file=sys.stderr)
            results[backend]["direct"] = asyncio.run(measure_direct(backend, backend_sizes, corpus, args))
        if "grpc" in args.via:
            print(f"{backend}: gRPC", file=sys.stderr)
            results[backend]["grpc"] = measure_grpc(backend, backend_sizes, corpus, args)
        for via, runs in results[backend].items():
            for name, run in runs.items():
                warm, concurrent = run["warm"], run["concurrent"]
                print(
                    f"  {backend} {via} {name}: p50 {warm['p50_ms']:.3f} ms, p99 {warm['p99_ms']:.3f} ms, "
                    f"{warm['per_second']:.0f}/s one at a time, {concurrent['per_second']:.0f}/s concurrent",
                    file=sys.stderr,
                )
                for workers, floor in run.get("floor_by_workers", {}).items():
                    recall = run["concurrent_by_workers"][workers]
                    print(
                        f"    {workers} worker(s), side by side: Recall {recall['per_second']:.0f}/s "
                        f"({recall['server_cpu_ms_per_recall']:.3f} ms server CPU each); floors: "
                        + ", ".join(
                            f"{load} {f['per_second']:.0f}/s ({f['server_cpu_ms_per_call']:.3f} ms)"
                            for load, f in floor.items()
                        ),
                        file=sys.stderr,
                    )
    if args.merge:
        results, conditions = merged(results_name, results, conditions, sizes)
    verdicts, missed = check_targets(results, sizes)
    query_cost = asyncio.run(query_embedding_cost(args.embedder, sizes[0], corpus))
    path = write_results(
        results_name,
        {
            "settings": {
                "users": [d.users for d in sizes],
                "episodes_per_user": args.episodes,
                "queries": args.queries,
                "rounds": args.rounds,
                "concurrency": args.concurrency,
                "server_tracing": args.tracing,
                "embedder": args.embedder,
                "grpc_client": args.client,
                "ghz_connections": args.connections if args.client == "ghz" else None,
                "workers": sorted({int(w) for w in str(args.workers).split(",") if w.strip()}),
                "floors": list(FLOORS) if args.floors and args.client == "ghz" else [],
            },
            "query_embedding": query_cost,
            "targets": {
                "p99_ratio_max": TARGET_P99_RATIO,
                "sqlite_recalls_per_second_min": TARGET_SQLITE_RECALLS_PER_SECOND,
            },
            "results": results,
            "conditions_per_backend": conditions,
            "skipped": skipped,
            "verdicts": verdicts,
            "missed": missed,
        },
    )
    print(f"query embedding ({query_cost['embedder']}): {query_cost['us_per_query']} µs per query", file=sys.stderr)
    print(f"target: >= {TARGET_SQLITE_RECALLS_PER_SECOND:.0f} Recall/s on SQLite through gRPC", file=sys.stderr)
    print(f"results: {path} and {plot(results_name, results, sizes, info)}", file=sys.stderr)
    for line in missed:
        print(f"MISSED {line}", file=sys.stderr)
    return 1 if missed else 0
