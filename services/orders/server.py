"""OrderService: the gRPC servicer over MongoDB, plus /metrics, /healthz and /readyz over HTTP.

Each RPC: validate ids against strict patterns (INVALID_ARGUMENT) → read the order by _id AND
user_id (NOT_FOUND, same message for "missing" and "someone else's") → apply the pure rules of
``services.orders.rules`` (FAILED_PRECONDITION) → conditional update. The database work of a
call gets the caller's remaining deadline as its pymongo timeout; MongoDB unreachable answers
UNAVAILABLE. Refusals carry a ``kefu-reason`` trailing metadata code the reply stage can phrase.

Run with ``kefu serve orders`` (``main``); tests start it in-process with ``start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
import pymongo
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConnectionFailure,
    ExecutionTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
    WTimeoutError,
)

from kefu.v1 import orders_pb2 as pb
from kefu.v1 import orders_pb2_grpc as pb_grpc
from services.orders import rules
from services.orders.convert import (
    address_from_proto,
    money,
    order_to_proto,
    refund_to_proto,
    return_to_proto,
)
from services.orders.repository import OrderRepository, ensure_indexes
from services.runtime.logs import setup_logging
from services.runtime.metrics import ORDER_RPC_SECONDS
from services.runtime.mongo import async_db
from services.runtime.settings import Settings

SERVICE = "orders"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OrderService"].full_name  # kefu.v1.OrderService
REASON_KEY = "kefu-reason"
# How often MongoDB is pinged for readiness and gRPC health: faster while it is down, so the
# service reports recovery quickly.
PING_EVERY_UP_S = 5.0
PING_EVERY_DOWN_S = 1.0
PING_TIMEOUT_S = 1.0
INDEX_TIMEOUT_S = 30.0

log = logging.getLogger("services.orders")
T = TypeVar("T")

RULE_CODES = {
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "failed_precondition": grpc.StatusCode.FAILED_PRECONDITION,
}


class ServiceFailure(Exception):
    """The service could not do the work (database down, deadline): not the customer's fault."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


def failure_for_mongo_error(exc: PyMongoError) -> ServiceFailure:
    """Map a pymongo error to the gRPC status the caller should see."""
    if isinstance(exc, ServerSelectionTimeoutError) or (
        isinstance(exc, ConnectionFailure) and not exc.timeout
    ):
        return ServiceFailure(
            grpc.StatusCode.UNAVAILABLE,
            "database_unavailable",
            "the order database is unavailable right now; try again in a minute",
        )
    if isinstance(exc, ExecutionTimeout | WTimeoutError) or exc.timeout:
        return ServiceFailure(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "deadline_exceeded",
            "the order lookup did not finish within the call's deadline; try again",
        )
    return ServiceFailure(
        grpc.StatusCode.INTERNAL,
        "database_error",
        f"the order database refused the request ({type(exc).__name__}); it was logged",
    )


def utc_now() -> datetime:
    # BSON dates keep milliseconds; truncating keeps what we return equal to what we stored.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass
class MongoState:
    """Last known MongoDB reachability (None: not checked yet) and whether indexes exist."""

    up: bool | None = None
    detail: str = "not checked yet"
    indexes_ready: bool = False


class OrderServicer(pb_grpc.OrderServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        repo: OrderRepository,
        state: MongoState | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.repo = repo
        self.state = state or MongoState()
        self.clock = clock

    async def _call(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        work: Callable[[], Awaitable[T]],
    ) -> T:
        """Run one RPC's work under the caller's deadline; map every failure to a status."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        reason = message = ""
        try:
            budget = rules.db_timeout_seconds(context.time_remaining())
            if budget is None:
                raise ServiceFailure(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "deadline_exceeded",
                    "the call's deadline had passed before the order lookup could start",
                )
            try:
                with pymongo.timeout(budget):
                    return await work()
            except PyMongoError as exc:
                raise failure_for_mongo_error(exc) from exc
        except rules.OrderRuleError as exc:
            code, reason, message = RULE_CODES[exc.kind], exc.reason, exc.message
        except ServiceFailure as exc:
            code, reason, message = exc.code, exc.reason, exc.message
            if code is grpc.StatusCode.INTERNAL:
                log.error("%s failed: %s", method, exc.__cause__, exc_info=exc.__cause__)
        except asyncio.CancelledError:
            # grpc cancels the handler when the caller goes away or its deadline passes
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            log.exception("%s failed unexpectedly", method)
            code, reason = grpc.StatusCode.INTERNAL, "internal_error"
            message = "OrderService hit an internal error; it was logged, try again later"
        finally:
            elapsed = time.perf_counter() - started
            ORDER_RPC_SECONDS.labels(method=method, code=code.name).observe(elapsed)
            level = logging.DEBUG if code is grpc.StatusCode.OK else logging.INFO
            log.log(
                level,
                "rpc %s %s",
                method,
                code.name,
                extra={"method": method, "code": code.name, "reason": reason, "ms": elapsed * 1e3},
            )
        await context.abort(code, message, trailing_metadata=((REASON_KEY, reason),))
        raise AssertionError("context.abort returned")  # abort always raises

    def _check_database(self) -> None:
        """Known down (the health loop says so): answer at once instead of waiting out the
        deadline on server selection. Called after validation, so bad input still says so."""
        if self.state.up is False:
            raise ServiceFailure(
                grpc.StatusCode.UNAVAILABLE,
                "database_unavailable",
                "the order database is unavailable right now; try again in a minute",
            )

    async def _owned_order(self, user_id: str, order_id: str) -> dict[str, Any]:
        self._check_database()
        doc = await self.repo.get_order(user_id, order_id)
        if doc is None:
            raise rules.not_found(order_id)
        return doc

    async def _change(
        self,
        order: dict[str, Any],
        kind: str,
        now: datetime,
        write: Callable[[], Awaitable[dict[str, Any] | None]],
        still_allowed: Callable[[dict[str, Any]], object],
    ) -> dict[str, Any]:
        """Claim the order's next version, write it, and explain a lost race by the rules.

        The claim (see services.orders.repository) is what makes two concurrent changes of one
        order impossible, on FerretDB as on MongoDB.
        """
        user_id, order_id = str(order["user_id"]), str(order["_id"])
        claim = await self.repo.claim(order, kind, now)
        if claim is not None:
            updated = await write()
            if updated is not None:
                return updated
            await self.repo.release(claim)
        # Another writer changed the order after it was read: answer from its state now (e.g.
        # "already cancelled"), or ask to retry when the change still looks allowed.
        current = await self._owned_order(user_id, order_id)
        still_allowed(current)
        raise rules.refused(
            "concurrent_update",
            f"order {order_id} was being changed at the same moment; please try again",
        )

    # --- RPCs ----------------------------------------------------------------------------------

    async def GetOrder(
        self, request: pb.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.Order:
        async def work() -> pb.Order:
            user_id = rules.validate_user_id(request.user_id)
            order_id = rules.validate_order_id(request.order_id)
            return order_to_proto(await self._owned_order(user_id, order_id))

        return await self._call("GetOrder", context, work)

    async def ListOrders(
        self, request: pb.ListOrdersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOrdersResponse:
        async def work() -> pb.ListOrdersResponse:
            user_id = rules.validate_user_id(request.user_id)
            limit = rules.validate_list_limit(request.limit)
            status = rules.validate_status_filter(request.status)
            self._check_database()
            docs = await self.repo.list_orders(user_id, limit, status)
            return pb.ListOrdersResponse(orders=[order_to_proto(d) for d in docs])

        return await self._call("ListOrders", context, work)

    async def CancelOrder(
        self, request: pb.CancelOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelOrderResponse:
        async def work() -> pb.CancelOrderResponse:
            user_id = rules.validate_user_id(request.user_id)
            order_id = rules.validate_order_id(request.order_id)
            reason = rules.validate_reason(request.reason)
            doc = await self._owned_order(user_id, order_id)
            now = self.clock()
            plan = rules.plan_cancellation(doc, now)

            async def write() -> dict[str, Any] | None:
                return await self.repo.cancel(doc, plan.fee_cents, plan.refund, reason, now)

            updated = await self._change(
                doc,
                "cancel",
                now,
                write,
                lambda current: rules.check_cancellable(order_id, str(current.get("status"))),
            )
            return pb.CancelOrderResponse(
                order=order_to_proto(updated),
                fee=money(plan.fee_cents, str(updated.get("currency") or rules.CURRENCY)),
            )

        return await self._call("CancelOrder", context, work)

    async def ChangeShippingAddress(
        self, request: pb.ChangeShippingAddressRequest, context: grpc.aio.ServicerContext
    ) -> pb.Order:
        async def work() -> pb.Order:
            user_id = rules.validate_user_id(request.user_id)
            order_id = rules.validate_order_id(request.order_id)
            if not request.HasField("address"):
                raise rules.invalid(
                    "missing_address", "address is required: send the complete new address"
                )
            address = rules.validate_address(address_from_proto(request.address))
            doc = await self._owned_order(user_id, order_id)
            rules.check_address_changeable(order_id, str(doc.get("status")))
            if not address["country"]:
                address["country"] = (doc.get("shipping_address") or {}).get("country") or "CN"
            now = self.clock()

            async def write() -> dict[str, Any] | None:
                return await self.repo.change_address(doc, address, now)

            updated = await self._change(
                doc,
                "change_address",
                now,
                write,
                lambda current: rules.check_address_changeable(
                    order_id, str(current.get("status"))
                ),
            )
            return order_to_proto(updated)

        return await self._call("ChangeShippingAddress", context, work)

    async def CreateReturn(
        self, request: pb.CreateReturnRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReturnRequest:
        async def work() -> pb.ReturnRequest:
            user_id = rules.validate_user_id(request.user_id)
            order_id = rules.validate_order_id(request.order_id)
            product_ids = rules.validate_product_ids(list(request.product_ids))
            reason = rules.validate_reason(request.reason)
            doc = await self._owned_order(user_id, order_id)
            retried = await self._retried_return(user_id, doc, product_ids)
            if retried is not None:
                return return_to_proto(retried)
            now = self.clock()
            plan = rules.plan_return(doc, product_ids, now)
            currency = str(doc.get("currency") or rules.CURRENCY)
            return_doc = {
                "_id": plan.return_id,
                "order_id": order_id,
                "user_id": user_id,
                "product_ids": plan.product_ids,
                "reason": reason,
                "status": "requested",
                "refund_amount_cents": plan.refund_cents,
                "currency": currency,
                "created_at": now,
            }
            refund = {
                "status": "pending",
                "amount_cents": plan.refund_cents,
                "requested_at": now,
                "completed_at": None,
            }

            async def write() -> dict[str, Any] | None:
                return await self.repo.open_return(doc, return_doc, refund, now)

            await self._change(
                doc,
                "return",
                now,
                write,
                lambda current: rules.plan_return(current, product_ids, now),
            )
            await self.repo.save_return(return_doc)
            return return_to_proto(return_doc)

        return await self._call("CreateReturn", context, work)

    async def _retried_return(
        self, user_id: str, order: dict[str, Any], product_ids: list[str]
    ) -> dict[str, Any] | None:
        """The return this very request already opened (a client retry), else None."""
        opened = order.get("return_request")
        if not opened or order.get("status") != "delivered":
            return None
        wanted = product_ids or rules.order_product_ids(order.get("items") or [])
        if set(wanted) != set(opened.get("product_ids") or []):
            return None
        saved = await self.repo.get_return(user_id, str(opened["return_id"]))
        if saved is not None:
            return saved
        # The order was marked but the returns-desk record was not written (crash in between).
        refund = order.get("refund") or {}
        rebuilt = {
            "_id": str(opened["return_id"]),
            "order_id": str(order["_id"]),
            "user_id": user_id,
            "product_ids": list(opened.get("product_ids") or []),
            "reason": str(opened.get("reason") or ""),
            "status": "requested",
            "refund_amount_cents": int(refund.get("amount_cents") or 0),
            "currency": str(order.get("currency") or rules.CURRENCY),
            "created_at": opened.get("created_at"),
        }
        await self.repo.save_return(rebuilt)
        return rebuilt

    async def GetRefundStatus(
        self, request: pb.GetRefundStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.RefundStatus:
        async def work() -> pb.RefundStatus:
            user_id = rules.validate_user_id(request.user_id)
            order_id = rules.validate_order_id(request.order_id)
            return refund_to_proto(await self._owned_order(user_id, order_id))

        return await self._call("GetRefundStatus", context, work)


# --- process: gRPC server, health, HTTP pages --------------------------------------------------


@dataclass
class RunningOrders:
    """A started OrderService: its ports, and ``stop()``."""

    grpc_server: grpc.aio.Server
    grpc_port: int
    web_runner: web.AppRunner
    web_port: int
    state: MongoState
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # the MongoDB client ``start`` opened itself (None when the caller passed a database)
    own_client: AsyncMongoClient[Any] | None = None

    async def stop(self, grace_s: float = 2.0) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.grpc_server.stop(grace_s)
        await self.web_runner.cleanup()
        if self.own_client is not None:
            await self.own_client.close()  # its monitor tasks end with it, not with the loop


async def watch_mongo(
    repo: OrderRepository, state: MongoState, health_servicer: health.aio.HealthServicer
) -> None:
    """Create the indexes once MongoDB answers, then keep readiness and gRPC health current."""
    while True:
        try:
            with pymongo.timeout(PING_TIMEOUT_S):
                await repo.ping()
            if not state.indexes_ready:
                with pymongo.timeout(INDEX_TIMEOUT_S):
                    await ensure_indexes(repo.db)
                state.indexes_ready = True
                log.info("indexes ready")
            if state.up is not True:
                log.info("mongodb reachable")
            state.up, state.detail = True, "ok"
        except PyMongoError as exc:
            if state.up is not False:
                log.error("mongodb unreachable: %s", exc)
            state.up, state.detail = False, f"{type(exc).__name__}: {str(exc)[:200]}"
        serving = state.up and state.indexes_ready
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, status)
        await asyncio.sleep(PING_EVERY_UP_S if state.up else PING_EVERY_DOWN_S)


def build_web_app(state: MongoState) -> web.Application:
    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"service": SERVICE, "ok": True})

    async def readyz(request: web.Request) -> web.Response:
        ready = bool(state.up and state.indexes_ready)
        body = {
            "service": SERVICE,
            "ready": ready,
            "mongo": {"ok": bool(state.up), "detail": state.detail},
            "indexes": state.indexes_ready,
        }
        return web.json_response(body, status=200 if ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start(
    settings: Settings,
    *,
    db: AsyncDatabase | None = None,
    grpc_addr: str | None = None,
    web_port: int | None = None,
) -> RunningOrders:
    """Start the gRPC server (with health and reflection) and the HTTP pages.

    ``grpc_addr`` "127.0.0.1:0" and ``web_port`` 0 pick free ports (tests); the defaults come
    from settings (KEFU_ORDERS_ADDR, KEFU_WEB_HOST / KEFU_WEB_PORT).
    """
    own_client = None
    if db is None:
        db = async_db(settings)
        own_client = db.client
    repo = OrderRepository(db)
    state = MongoState()
    servicer = OrderServicer(repo, state)

    server = grpc.aio.server()
    pb_grpc.add_OrderServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    addr = grpc_addr or settings.orders_addr
    try:
        grpc_port = server.add_insecure_port(addr)
    except RuntimeError as exc:
        raise RuntimeError(
            f"cannot listen for gRPC on {addr} ({exc}): is another OrderService running? "
            "Set KEFU_ORDERS_ADDR to a free host:port."
        ) from exc
    await server.start()

    runner = web.AppRunner(build_web_app(state), access_log=None)
    await runner.setup()
    port = settings.web_port_for(SERVICE) if web_port is None else web_port
    site = web.TCPSite(runner, settings.web_host, port)
    try:
        await site.start()
    except OSError as exc:
        await server.stop(0)
        await runner.cleanup()
        raise RuntimeError(
            f"cannot serve /metrics on {settings.web_host}:{port} ({exc}): "
            "set KEFU_WEB_PORT to a free port"
        ) from exc
    bound_web_port = int(runner.addresses[0][1])

    running = RunningOrders(server, grpc_port, runner, bound_web_port, state, own_client=own_client)
    running.tasks.append(asyncio.create_task(watch_mongo(repo, state, health_servicer)))
    log.info(
        "OrderService listening",
        extra={"grpc": f"{addr.rsplit(':', 1)[0]}:{grpc_port}", "web_port": bound_web_port},
    )
    return running


async def serve(settings: Settings) -> None:
    """Run OrderService until SIGTERM/SIGINT, then drain in-flight calls and stop."""
    running = await start(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("OrderService stopping")
        await running.stop()


async def main(settings: Settings) -> None:
    """Entry point of ``kefu serve orders``."""
    setup_logging(SERVICE, settings.log_level, settings.log_format)
    await serve(settings)
