"""No tenant can build an unbounded pile, and every list answer is paged (issue 19, item 9).

Found on main: 24 pending approvals in 2.9 s under a 5/s rate limit, each living 300 s;
six 1 MiB working blocks made ``ListBlocks`` fail forever (the answer no longer fit one
message); ``QueryFacts(limit=10000)`` could build an answer of ~640 MB. Now pending
approvals and block bytes are capped per tenant (RESOURCE_EXHAUSTED beyond, with
ErrorInfo naming the limit), and ``ListBlocks`` / ``QueryFacts`` answer in pages that fit
a message, with opaque page tokens that only serve the tenant and query they were made for.
Every test runs through real gRPC on every backend of the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from loomflow.testing.suite import running_suite
from loomflow.v1 import memory_pb2, memory_pb2_grpc, policy_pb2, policy_pb2_grpc, tenancy_pb2
from tests.reliability.test_tenant_attacks import params
from tests.support import backends
from tests.support.status import bad_request_fields, error_info

MIB = 1024 * 1024


@contextlib.asynccontextmanager
async def serve(service: str, backend: str, tmp_path: Path, **settings: Any) -> AsyncIterator[grpc.aio.Channel]:
    async with contextlib.AsyncExitStack() as stack:
        isolated = backends.isolated(backend, tmp_path, f"piles_{service}_{secrets.token_hex(4)}", key_prefix=False)
        dsn = await stack.enter_async_context(isolated)
        overrides = {service: {"dsn": dsn, **settings}}
        running = await stack.enter_async_context(running_suite(tmp_path, services=service, overrides=overrides))
        yield running.channel


def scope(user_id: str) -> tenancy_pb2.UserScope:
    return tenancy_pb2.UserScope(user_id=user_id)


MEMORY_BACKENDS = params("memory", "sqlite", "postgres", "redis", "chroma")


@pytest.mark.parametrize("backend", MEMORY_BACKENDS)
async def test_six_one_mib_blocks_list_in_pages_that_fit_a_message(tmp_path: Path, backend: str) -> None:
    alice, bob = f"alice-{secrets.token_hex(4)}", f"bob-{secrets.token_hex(4)}"
    async with serve("memory", backend, tmp_path) as channel:  # default settings: the 16 MiB cap holds six
        stub = memory_pb2_grpc.MemoryServiceStub(channel)
        for n in range(6):
            content = chr(ord("a") + n) * MIB
            await stub.PutBlock(memory_pb2.PutBlockRequest(scope=scope(alice), label=f"b{n}", content=content))
        await stub.PutBlock(memory_pb2.PutBlockRequest(scope=scope(bob), label="b0", content="bob's"))

        labels: list[str] = []
        request = memory_pb2.ListBlocksRequest(scope=scope(alice))
        pages = 0
        while True:
            page = await stub.ListBlocks(request)
            pages += 1
            labels += [b.label for b in page.blocks]
            assert page.ByteSize() < 4 * MIB, "every page fits the default message size"
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
            assert pages < 10, "paging must advance"
        assert labels == [f"b{n}" for n in range(6)], "all blocks, in order, each once"
        assert pages >= 2

        first = await stub.ListBlocks(memory_pb2.ListBlocksRequest(scope=scope(alice), page_size=2))
        assert first.next_page_token
        for misuse in (
            memory_pb2.ListBlocksRequest(scope=scope(bob), page_token=first.next_page_token),
            memory_pb2.ListBlocksRequest(scope=scope(alice), session_id="other", page_token=first.next_page_token),
            memory_pb2.ListBlocksRequest(scope=scope(alice), page_token="not-a-token"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ListBlocks(misuse)
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert bad_request_fields(caught.value) == ["page_token"]


@pytest.mark.parametrize("backend", MEMORY_BACKENDS)
async def test_block_bytes_are_capped_per_tenant(tmp_path: Path, backend: str) -> None:
    alice, bob = f"alice-{secrets.token_hex(4)}", f"bob-{secrets.token_hex(4)}"
    async with serve("memory", backend, tmp_path, max_block_bytes_per_user=2 * MIB) as channel:
        stub = memory_pb2_grpc.MemoryServiceStub(channel)
        for n in range(2):
            await stub.PutBlock(memory_pb2.PutBlockRequest(scope=scope(alice), label=f"b{n}", content="a" * MIB))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.PutBlock(memory_pb2.PutBlockRequest(scope=scope(alice), label="one-too-many", content="x"))
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        info = error_info(refused.value)
        assert info is not None
        assert info.metadata["limit"] == "max_block_bytes_per_user"
        await stub.PutBlock(memory_pb2.PutBlockRequest(scope=scope(bob), label="b0", content="b" * MIB))


# Redis re-reads a tenant's facts on every assertion, so loading 1,010 takes minutes there; the page
# cap is the servicer's (one code path for every backend) and Redis's keyset paging is covered by
# tests/memory/test_conformance.py::test_fact_queries_page_in_a_stable_order_without_gaps_or_repeats.
@pytest.mark.parametrize("backend", params("memory", "sqlite", "postgres", "chroma"))
async def test_query_facts_never_answers_more_than_a_page(tmp_path: Path, backend: str) -> None:
    alice, bob = f"alice-{secrets.token_hex(4)}", f"bob-{secrets.token_hex(4)}"
    async with serve("memory", backend, tmp_path) as channel:
        stub = memory_pb2_grpc.MemoryServiceStub(channel)
        for batch in range(0, 1010, 10):  # a few at a time: one tenant's writes contend on its keys
            await asyncio.gather(
                *(
                    stub.AssertFact(
                        memory_pb2.AssertFactRequest(scope=scope(alice), subject="s", predicate=f"p{n:04d}", object="o")
                    )
                    for n in range(batch, batch + 10)
                )
            )
        await stub.AssertFact(memory_pb2.AssertFactRequest(scope=scope(bob), subject="s", predicate="p", object="o"))
        first = await stub.QueryFacts(memory_pb2.QueryFactsRequest(scope=scope(alice), limit=10000))
        assert len(first.facts) == 1000, "limit=10000 is served as pages of at most 1000"
        assert first.next_page_token
        rest = await stub.QueryFacts(memory_pb2.QueryFactsRequest(scope=scope(alice), page_token=first.next_page_token))
        assert not rest.next_page_token
        predicates = [f.predicate for f in (*first.facts, *rest.facts)]
        assert predicates == [f"p{n:04d}" for n in range(1010)], "pages add up to the whole answer, in order"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.QueryFacts(memory_pb2.QueryFactsRequest(scope=scope(bob), page_token=first.next_page_token))
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("backend", params("sqlite", "postgres"))
async def test_pending_approvals_are_capped_per_tenant(tmp_path: Path, backend: str) -> None:
    alice, bob = f"alice-{secrets.token_hex(4)}", f"bob-{secrets.token_hex(4)}"
    async with serve("policy", backend, tmp_path, max_pending_approvals=5) as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)

        async def ask(user_id: str) -> grpc.StatusCode:
            try:
                await stub.RequestApproval(policy_pb2.RequestApprovalRequest(scope=scope(user_id), tool_name="shell"))
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        codes = await asyncio.gather(*(ask(alice) for _ in range(24)))
        assert codes.count(grpc.StatusCode.OK) == 5, "24 concurrent requests leave exactly the cap pending"
        assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RequestApproval(policy_pb2.RequestApprovalRequest(scope=scope(alice), tool_name="shell"))
        info = error_info(refused.value)
        assert info is not None
        assert info.metadata["limit"] == "max_pending_approvals"
        assert await ask(bob) is grpc.StatusCode.OK, "one tenant's pile does not block another"
