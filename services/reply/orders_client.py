"""The reply stage's OrderService client: deadline, one retry, a circuit breaker, metrics.

No call ever raises for an RPC failure: every method returns an ``OrderCallResult`` whose
``code`` is the gRPC status name (OK, NOT_FOUND, FAILED_PRECONDITION, UNAVAILABLE, ...), so the
dialogue logic decides what to tell the customer and the stage never stalls on a dead service:

- deadline per attempt = settings.orders_deadline_ms (300 ms by default);
- one retry, only for UNAVAILABLE / DEADLINE_EXCEEDED (transient: connection refused, a slow pod);
- circuit breaker: after ``failure_threshold`` consecutive infrastructure failures the breaker
  opens and calls fail at once with code UNAVAILABLE (detail "circuit open") for ``cool_down_s``;
  then one trial call is let through (half-open): success closes it, failure opens it again.
  When the channel reports a live connection (READY) the breaker closes at once: the service
  is back and the cool-down would only keep customers waiting.
  Business answers (NOT_FOUND, FAILED_PRECONDITION, ...) are the service working, not failing.

Identifiers are validated against the strict patterns before any call; the user_id is always
the conversation's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from google.protobuf.message import Message

from kefu.v1 import orders_pb2, orders_pb2_grpc
from services.runtime import metrics
from services.runtime.mongo import ORDER_ID_RE, PRODUCT_ID_RE, USER_ID_RE
from services.runtime.settings import Settings

RETRYABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})
# Codes that mean the service is unhealthy (they count towards opening the breaker).
INFRA_FAILURES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN"})
CIRCUIT_OPEN_DETAIL = "circuit open"
REASON_METADATA_KEY = "kefu-reason"
# gRPC's default reconnect backoff grows to 120 s: after an outage the channel would keep failing
# fast long after OrderService is back. Capped at 1 s, the channel is usable a second after the
# service returns (a local OrderService is cheap to probe).
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


@dataclass
class OrderCallResult:
    rpc: str
    code: str
    order_id: str = ""
    ms: float = 0.0
    response: Any = None  # the response message when code == "OK"
    detail: str = ""
    reason: str = ""  # OrderService's machine-readable refusal (trailing metadata kefu-reason)

    @property
    def ok(self) -> bool:
        return self.code == "OK"

    @property
    def failed(self) -> bool:
        """The service could not answer (as opposed to answering 'no')."""
        return self.code in INFRA_FAILURES


class OrderGateway(Protocol):
    """What the dialogue logic needs from the order system (the gRPC client or a test fake)."""

    async def get_order(self, user_id: str, order_id: str) -> OrderCallResult: ...
    async def list_orders(self, user_id: str, limit: int = 10) -> OrderCallResult: ...
    async def cancel_order(self, user_id: str, order_id: str, reason: str) -> OrderCallResult: ...
    async def change_shipping_address(
        self, user_id: str, order_id: str, address: orders_pb2.Address
    ) -> OrderCallResult: ...
    async def create_return(
        self, user_id: str, order_id: str, product_ids: list[str], reason: str
    ) -> OrderCallResult: ...
    async def get_refund_status(self, user_id: str, order_id: str) -> OrderCallResult: ...


@dataclass
class CircuitBreaker:
    failure_threshold: int = 3
    cool_down_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    _trial_in_flight: bool = field(default=False, repr=False)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.cool_down_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one trial at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def release_trial(self) -> None:
        self._trial_in_flight = False

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._trial_in_flight = False
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.failure_threshold:
            self.opened_at = self.clock()  # (re)open: a failed trial starts a new cool-down


def _reason(exc: grpc.aio.AioRpcError) -> str:
    for key, value in exc.trailing_metadata() or ():
        if key == REASON_METADATA_KEY:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return ""


def _invalid(rpc: str, order_id: str, what: str) -> OrderCallResult:
    return OrderCallResult(rpc, "INVALID_ARGUMENT", order_id, detail=what)


class GrpcOrdersClient:
    """OrderGateway over a grpc.aio channel to settings.orders_addr."""

    def __init__(
        self,
        settings: Settings,
        *,
        breaker: CircuitBreaker | None = None,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        self.address = settings.orders_addr
        self.deadline_s = settings.orders_deadline_ms / 1000.0
        self.breaker = breaker or CircuitBreaker()
        self.channel = channel or grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self.stub = orders_pb2_grpc.OrderServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    def channel_state(self) -> str:
        """READY, IDLE, CONNECTING, TRANSIENT_FAILURE or SHUTDOWN (for /readyz)."""
        return str(self.channel.get_state(try_to_connect=True).name)

    async def _call(
        self,
        rpc: str,
        order_id: str,
        invoke: Callable[[float], Awaitable[Message]],
    ) -> OrderCallResult:
        if self.breaker.state != "closed" and self.channel_state() == "READY":
            # the connection is back: OrderService has returned, no need to sit out the cool-down
            self.breaker.record_success()
        if not self.breaker.allow():
            metrics.ORDER_RPC_SECONDS.labels(rpc, "CIRCUIT_OPEN").observe(0.0)
            return OrderCallResult(rpc, "UNAVAILABLE", order_id, detail=CIRCUIT_OPEN_DETAIL)
        started = time.perf_counter()
        code, detail, reason, response = "UNKNOWN", "", "", None
        for attempt in range(2):
            attempt_started = time.perf_counter()
            try:
                response = await invoke(self.deadline_s)
                code, detail = "OK", ""
            except grpc.aio.AioRpcError as exc:
                code, detail = exc.code().name, exc.details() or ""
                reason = _reason(exc)
            except BaseException:
                # cancelled (shutdown): free a half-open trial slot so the breaker cannot wedge
                self.breaker.release_trial()
                raise
            metrics.ORDER_RPC_SECONDS.labels(rpc, code).observe(
                time.perf_counter() - attempt_started
            )
            if code not in RETRYABLE or attempt == 1:
                break
        if code in INFRA_FAILURES:
            self.breaker.record_failure()
        else:
            self.breaker.record_success()
        ms = round((time.perf_counter() - started) * 1000.0, 3)
        return OrderCallResult(
            rpc, code, order_id, ms, response if code == "OK" else None, detail, reason
        )

    async def get_order(self, user_id: str, order_id: str) -> OrderCallResult:
        if not USER_ID_RE.match(user_id):
            return _invalid("GetOrder", order_id, "invalid user id")
        if not ORDER_ID_RE.match(order_id):
            return _invalid("GetOrder", order_id, "invalid order id")
        req = orders_pb2.GetOrderRequest(user_id=user_id, order_id=order_id)
        return await self._call("GetOrder", order_id, lambda t: self.stub.GetOrder(req, timeout=t))

    async def list_orders(self, user_id: str, limit: int = 10) -> OrderCallResult:
        if not USER_ID_RE.match(user_id):
            return _invalid("ListOrders", "", "invalid user id")
        req = orders_pb2.ListOrdersRequest(user_id=user_id, limit=max(1, min(50, limit)))
        return await self._call("ListOrders", "", lambda t: self.stub.ListOrders(req, timeout=t))

    async def cancel_order(self, user_id: str, order_id: str, reason: str) -> OrderCallResult:
        if not USER_ID_RE.match(user_id) or not ORDER_ID_RE.match(order_id):
            return _invalid("CancelOrder", order_id, "invalid user or order id")
        req = orders_pb2.CancelOrderRequest(user_id=user_id, order_id=order_id, reason=reason[:200])
        return await self._call(
            "CancelOrder", order_id, lambda t: self.stub.CancelOrder(req, timeout=t)
        )

    async def change_shipping_address(
        self, user_id: str, order_id: str, address: orders_pb2.Address
    ) -> OrderCallResult:
        if not USER_ID_RE.match(user_id) or not ORDER_ID_RE.match(order_id):
            return _invalid("ChangeShippingAddress", order_id, "invalid user or order id")
        req = orders_pb2.ChangeShippingAddressRequest(
            user_id=user_id, order_id=order_id, address=address
        )
        return await self._call(
            "ChangeShippingAddress",
            order_id,
            lambda t: self.stub.ChangeShippingAddress(req, timeout=t),
        )

    async def create_return(
        self, user_id: str, order_id: str, product_ids: list[str], reason: str
    ) -> OrderCallResult:
        if not USER_ID_RE.match(user_id) or not ORDER_ID_RE.match(order_id):
            return _invalid("CreateReturn", order_id, "invalid user or order id")
        if any(not PRODUCT_ID_RE.match(p) for p in product_ids):
            return _invalid("CreateReturn", order_id, "invalid product id")
        req = orders_pb2.CreateReturnRequest(
            user_id=user_id, order_id=order_id, product_ids=product_ids, reason=reason[:200]
        )
        return await self._call(
            "CreateReturn", order_id, lambda t: self.stub.CreateReturn(req, timeout=t)
        )

    async def get_refund_status(self, user_id: str, order_id: str) -> OrderCallResult:
        if not USER_ID_RE.match(user_id) or not ORDER_ID_RE.match(order_id):
            return _invalid("GetRefundStatus", order_id, "invalid user or order id")
        req = orders_pb2.GetRefundStatusRequest(user_id=user_id, order_id=order_id)
        return await self._call(
            "GetRefundStatus", order_id, lambda t: self.stub.GetRefundStatus(req, timeout=t)
        )
