"""Helpers for PolicyService tests through a real server: credentials, requests, streams."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import grpc

from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.testing.suite import TEST_JWT_SECRET
from loomflow.v1 import policy_pb2, policy_pb2_grpc, tenancy_pb2

Metadata = tuple[tuple[str, str], ...]

AUTH = AuthSettings(jwt_secret=TEST_JWT_SECRET)


def bearer(subject: str, role: Role) -> Metadata:
    return (("authorization", f"Bearer {mint_token(AUTH, subject, role)}"),)


SERVICE = bearer("loomflow-agent", Role.SERVICE)
OPERATOR = bearer("oncall", Role.OPERATOR)


def user(subject: str) -> Metadata:
    return bearer(subject, Role.USER)


def scope(user_id: str) -> tenancy_pb2.UserScope:
    return tenancy_pb2.UserScope(user_id=user_id)


def rule(rule_id: str, tool: str, decision: int, *conditions: policy_pb2.ArgumentCondition) -> policy_pb2.Rule:
    return policy_pb2.Rule(id=rule_id, tool=tool, decision=decision, conditions=list(conditions))  # type: ignore[arg-type]


@dataclass
class Client:
    """A PolicyService stub that sends one credential on every call."""

    stub: policy_pb2_grpc.PolicyServiceAsyncStub
    metadata: Metadata = ()

    async def check(self, user_id: str, tool: str, **fields: Any) -> policy_pb2.CheckResponse:
        request = policy_pb2.CheckRequest(scope=scope(user_id), tool_name=tool, **fields)
        return await self.stub.Check(request, metadata=self.metadata)

    async def request_approval(self, user_id: str, tool: str, **fields: Any) -> policy_pb2.Approval:
        request = policy_pb2.RequestApprovalRequest(scope=scope(user_id), tool_name=tool, **fields)
        return (await self.stub.RequestApproval(request, metadata=self.metadata)).approval

    async def get_approval(self, user_id: str, approval_id: str) -> policy_pb2.Approval:
        request = policy_pb2.GetApprovalRequest(scope=scope(user_id), approval_id=approval_id)
        return (await self.stub.GetApproval(request, metadata=self.metadata)).approval

    async def consume(self, user_id: str, approval_id: str, tool: str, **fields: Any) -> policy_pb2.Approval:
        request = policy_pb2.ConsumeApprovalRequest(
            scope=scope(user_id), approval_id=approval_id, tool_name=tool, **fields
        )
        return (await self.stub.ConsumeApproval(request, metadata=self.metadata)).approval

    async def resolve(self, user_id: str, approval_id: str, resolution: int, **fields: Any) -> policy_pb2.Approval:
        request = policy_pb2.ResolveApprovalRequest(
            scope=scope(user_id),
            approval_id=approval_id,
            resolution=resolution,  # type: ignore[arg-type]
            **fields,
        )
        return (await self.stub.ResolveApproval(request, metadata=self.metadata)).approval

    async def put_policy(
        self, user_id: str, policy: policy_pb2.Policy, *, default_policy: bool = False
    ) -> policy_pb2.Policy:
        request = policy_pb2.PutPolicyRequest(scope=scope(user_id), policy=policy, default_policy=default_policy)
        return (await self.stub.PutPolicy(request, metadata=self.metadata)).policy

    async def get_policy(self, user_id: str, *, default_policy: bool = False) -> policy_pb2.GetPolicyResponse:
        request = policy_pb2.GetPolicyRequest(scope=scope(user_id), default_policy=default_policy)
        return await self.stub.GetPolicy(request, metadata=self.metadata)

    def watch(self, user_id: str, **fields: Any) -> Watcher:
        request = policy_pb2.WatchApprovalsRequest(scope=scope(user_id), **fields)
        return Watcher(self.stub.WatchApprovals(request, metadata=self.metadata))


def client(channel: grpc.aio.Channel, metadata: Metadata = ()) -> Client:
    return Client(policy_pb2_grpc.PolicyServiceStub(channel), metadata)


class Watcher:
    """A WatchApprovals stream read in the background, so tests can wait for what arrived."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.received: list[policy_pb2.Approval] = []
        self.error: grpc.aio.AioRpcError | None = None
        self._arrived = asyncio.Condition()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for response in self.call:
                async with self._arrived:
                    self.received.append(response.approval)
                    self._arrived.notify_all()
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.CANCELLED:
                self.error = exc
        finally:
            async with self._arrived:
                self._arrived.notify_all()

    async def wait_for(self, count: int, within: float = 5.0) -> list[policy_pb2.Approval]:
        """The first ``count`` approvals; fails if they do not arrive in time."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count or self._task.done())
        if self.error is not None:
            raise self.error
        assert len(self.received) >= count, f"stream ended after {len(self.received)} of {count} approvals"
        return self.received[:count]

    async def ready(self) -> None:
        """Waits until the server has the stream open (its initial metadata arrived)."""
        await self.call.initial_metadata()

    async def errored(self, within: float = 5.0) -> grpc.aio.AioRpcError:
        async with asyncio.timeout(within):
            await asyncio.shield(self._task)
        assert self.error is not None, "the stream ended without an error"
        return self.error

    async def close(self) -> None:
        self.call.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
