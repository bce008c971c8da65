"""The OrderService client: circuit breaker (fake clock), deadline, one retry, never raising.

The client tests run an in-process grpc.aio server with a scripted servicer: real gRPC on a
local port, no external service.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import grpc

from kefu.v1 import orders_pb2, orders_pb2_grpc
from services.reply.orders_client import CIRCUIT_OPEN_DETAIL, CircuitBreaker, GrpcOrdersClient
from services.runtime.settings import load_settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_half_opens_after_cool_down() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, cool_down_s=10.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 10.0
    assert breaker.state == "half_open"
    assert breaker.allow()  # one trial call
    assert not breaker.allow()  # and only one at a time
    breaker.record_failure()  # the trial failed: open for another cool-down
    assert breaker.state == "open"
    clock.now += 10.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.failures == 0 and breaker.allow()


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=3, clock=Clock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class ScriptedOrders(orders_pb2_grpc.OrderServiceServicer):
    def __init__(self, get_order: Handler) -> None:
        self.handler = get_order
        self.calls = 0

    async def GetOrder(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.calls += 1
        return await self.handler(request, context)


@asynccontextmanager
async def serving(servicer: ScriptedOrders) -> AsyncIterator[str]:
    server = grpc.aio.server()
    orders_pb2_grpc.add_OrderServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def client_for(address: str, **breaker: Any) -> GrpcOrdersClient:
    settings = replace(load_settings({}), orders_addr=address, orders_deadline_ms=300)
    return GrpcOrdersClient(settings, breaker=CircuitBreaker(**breaker) if breaker else None)


def test_one_retry_on_unavailable_then_ok() -> None:
    async def run() -> None:
        async def flaky(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if servicer.calls == 1:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
            return orders_pb2.Order(order_id=request.order_id, user_id=request.user_id)

        servicer = ScriptedOrders(flaky)
        async with serving(servicer) as address:
            client = client_for(address)
            result = await client.get_order("u1001", "7730192846")
            await client.close()
        assert result.ok and result.response.order_id == "7730192846"
        assert servicer.calls == 2 and client.breaker.failures == 0

    asyncio.run(run())


def test_deadline_exceeded_after_one_retry_and_counted_by_the_breaker() -> None:
    async def run() -> None:
        async def slow(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await asyncio.sleep(1.0)
            return orders_pb2.Order()

        servicer = ScriptedOrders(slow)
        async with serving(servicer) as address:
            client = client_for(address)
            started = time.perf_counter()
            result = await client.get_order("u1001", "7730192846")
            elapsed = time.perf_counter() - started
            await client.close()
        assert result.code == "DEADLINE_EXCEEDED" and result.failed and result.response is None
        assert servicer.calls == 2 and 0.55 <= elapsed < 1.0  # two attempts of 300 ms
        assert client.breaker.failures == 1

    asyncio.run(run())


def test_business_answers_keep_the_refusal_reason_and_do_not_trip_the_breaker() -> None:
    async def run() -> None:
        async def missing(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                "no order",
                trailing_metadata=(("kefu-reason", "order_not_found"),),
            )

        servicer = ScriptedOrders(missing)
        async with serving(servicer) as address:
            client = client_for(address, failure_threshold=1)
            results = [await client.get_order("u1001", "7730192846") for _ in range(3)]
            await client.close()
        assert all(r.code == "NOT_FOUND" and not r.failed for r in results)
        assert results[0].reason == "order_not_found" and servicer.calls == 3
        assert client.breaker.state == "closed"

    asyncio.run(run())


def test_a_dead_service_opens_the_breaker_and_later_calls_fail_fast() -> None:
    async def run() -> None:
        from kefu.localstack import free_port

        client = client_for(f"127.0.0.1:{free_port()}", failure_threshold=2, cool_down_s=30.0)
        first = await client.get_order("u1001", "7730192846")
        second = await client.get_order("u1001", "7730192846")
        started = time.perf_counter()
        third = await client.list_orders("u1001")
        fast = time.perf_counter() - started
        await client.close()
        assert first.code == second.code == "UNAVAILABLE"
        assert client.breaker.state == "open"
        assert third.code == "UNAVAILABLE" and third.detail == CIRCUIT_OPEN_DETAIL and fast < 0.01

    asyncio.run(run())


def test_identifiers_are_validated_before_any_call() -> None:
    async def run() -> None:
        async def never(request: Any, context: grpc.aio.ServicerContext) -> Any:
            raise AssertionError("must not be called")

        servicer = ScriptedOrders(never)
        async with serving(servicer) as address:
            client = client_for(address)
            bad_order = await client.get_order("u1001", '{"$gt": ""}')
            bad_user = await client.get_order("u1001; drop", "7730192846")
            bad_product = await client.create_return("u1001", "7730192846", ["../etc"], "x")
            await client.close()
        assert bad_order.code == bad_user.code == bad_product.code == "INVALID_ARGUMENT"
        assert servicer.calls == 0

    asyncio.run(run())


def test_the_breaker_closes_as_soon_as_the_service_is_back() -> None:
    async def run() -> None:
        async def ok(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return orders_pb2.Order(order_id=request.order_id)

        servicer = ScriptedOrders(ok)
        async with serving(servicer) as address:
            client = client_for(address, failure_threshold=1, cool_down_s=600.0)
            client.breaker.record_failure()  # opened during an outage that is over now
            assert client.breaker.state == "open"
            deadline = time.monotonic() + 5
            while client.channel_state() != "READY" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            result = await client.get_order("u1001", "7730192846")
            await client.close()
        assert result.ok and client.breaker.state == "closed"

    asyncio.run(run())
