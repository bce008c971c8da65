"""OrderService end to end: a real FerretDB, the real server in-process, a real gRPC channel.

FerretDB is started by ``kefu.localstack`` on a free port with its data in a temporary folder,
so these tests never touch the developer's running stack. The server runs on its own event loop
in a background thread; the tests talk to it over a plain synchronous gRPC channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY
from pymongo.database import Database

from kefu import localstack
from kefu.v1 import orders_pb2 as pb
from kefu.v1 import orders_pb2_grpc as pb_grpc
from services.orders import rules
from services.orders.catalog import load_catalog
from services.orders.repository import register_orders
from services.orders.seed import DEMO_ORDER_IDS, seed
from services.orders.server import REASON_KEY, RunningOrders, start
from services.runtime.mongo import async_db, sync_db
from services.runtime.settings import Settings, load_settings

pytestmark = pytest.mark.integration
T = TypeVar("T")

INJECTIONS = ['{"$ne": null}', "1234567890' || '1", '{"$gt": ""}', "7730192846\n", "773019284"]


# --- fixtures: FerretDB, the server in a thread, channels ---------------------------------------


@pytest.fixture(scope="module")
def mongo_uri(ferretdb_uri: str) -> str:
    return ferretdb_uri


@pytest.fixture(scope="module")
def settings(mongo_uri: str) -> Settings:
    return load_settings(
        {"KEFU_MONGO_URI": mongo_uri, "KEFU_MONGO_DB": f"orders_{uuid.uuid4().hex[:8]}"}
    )


@pytest.fixture(scope="module")
def db(settings: Settings) -> Database:
    database = sync_db(settings)
    seed(database, reset=True)
    return database


class LoopThread:
    """An asyncio loop in a daemon thread, for the server (and a TCP proxy) under test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_ready(running: RunningOrders, ready: bool = True, timeout: float = 30) -> dict[str, Any]:
    """Poll /readyz until it reports ``ready`` (the Mongo watcher has run)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = http_get(running.web_port, "/readyz")
        if (status == 200) == ready:
            return dict(json.loads(body))
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz still {status} {body} after {timeout} s")
        time.sleep(0.1)


@contextlib.contextmanager
def running_server(loop_thread: LoopThread, settings: Settings) -> Iterator[RunningOrders]:
    running = loop_thread.run(start(settings, grpc_addr="127.0.0.1:0", web_port=0))
    try:
        yield running
    finally:
        loop_thread.run(running.stop(0))


@pytest.fixture(scope="module")
def server(loop_thread: LoopThread, settings: Settings, db: Database) -> Iterator[RunningOrders]:
    with running_server(loop_thread, settings) as running:
        wait_ready(running)
        yield running


@pytest.fixture(scope="module")
def channel(server: RunningOrders) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.OrderServiceStub:
    return pb_grpc.OrderServiceStub(channel)


# --- helpers -----------------------------------------------------------------------------------

_ids = itertools.count(1)


def now_ms() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_user() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def make_order(db: Database, user_id: str, status: str, **fields: Any) -> str:
    """Insert an order for one test; dates relative to now. Returns its id."""
    order_id = f"9{time.time_ns() % 10**5:05d}{next(_ids) % 10**4:04d}"
    now = now_ms()
    paid = status != "pending"
    shipped = status in ("shipped", "delivered", "returned")
    delivered_at = now - timedelta(days=2) if status in ("delivered", "returned") else None
    doc: dict[str, Any] = {
        "_id": order_id,
        "user_id": user_id,
        "status": status,
        "items": [
            {
                "product_id": "P10001",
                "name_zh": "手机壳",
                "name_en": "Phone case",
                "quantity": 2,
                "unit_price_cents": 3900,
            },
            {
                "product_id": "P10050",
                "name_zh": "充电器",
                "name_en": "Charger",
                "quantity": 1,
                "unit_price_cents": 12900,
            },
        ],
        "total_cents": 2 * 3900 + 12900,
        "currency": "CNY",
        "shipping_address": {
            "name": "王小明",
            "phone": "+86 138 0013 8000",
            "line1": "人民路1号",
            "line2": "",
            "city": "上海市",
            "region": "上海市",
            "postal_code": "200001",
            "country": "CN",
        },
        "shipment": {
            "carrier": "顺丰",
            "tracking_number": "SF1234567890123",
            "shipped_at": now - timedelta(days=3),
            "eta": now + timedelta(days=1),
            "delivered_at": delivered_at,
        }
        if shipped
        else None,
        "created_at": now - timedelta(hours=3),
        "paid_at": now - timedelta(hours=2) if paid else None,
        "return_deadline": rules.return_deadline_for(delivered_at) if delivered_at else None,
        "refund": {"status": "none", "amount_cents": 0, "requested_at": None, "completed_at": None},
        "invoice_number": f"INV-T-{order_id}" if paid else "",
        "payment_method": "alipay",
    }
    doc.update(fields)
    db["orders"].insert_one(doc)
    register_orders(db, [doc])
    return order_id


def stored_order(db: Database, order_id: str) -> dict[str, Any]:
    doc = db["orders"].find_one({"_id": order_id})
    assert doc is not None, f"order {order_id} is not in the database"
    return dict(doc)


def rpc_error(call: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(*args, **kwargs)
    return err.value


def reason_of(error: grpc.RpcError) -> str:
    return dict(error.trailing_metadata() or ()).get(REASON_KEY, "")


def metric(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- reading ----------------------------------------------------------------------------------


def test_get_order_returns_the_customers_order(stub: pb_grpc.OrderServiceStub) -> None:
    order_id = DEMO_ORDER_IDS["u1001"]["shipped"]
    order = stub.GetOrder(pb.GetOrderRequest(user_id="u1001", order_id=order_id), timeout=5)
    assert order.order_id == order_id and order.user_id == "u1001" and order.status == "shipped"
    assert order.shipment.carrier in ("顺丰", "京东", "中通") and order.shipment.tracking_number
    assert order.shipment.eta.ToDatetime(tzinfo=UTC) > datetime.now(UTC)
    assert order.total.cents == sum(i.quantity * i.unit_price.cents for i in order.items)
    assert order.invoice_number.startswith("INV")


def test_list_orders_newest_first_with_limit_and_status(stub: pb_grpc.OrderServiceStub) -> None:
    everything = stub.ListOrders(pb.ListOrdersRequest(user_id="u2001", limit=50), timeout=5).orders
    assert len(everything) == 16 and {o.user_id for o in everything} == {"u2001"}
    created = [o.created_at.ToDatetime() for o in everything]
    assert created == sorted(created, reverse=True)
    default = stub.ListOrders(pb.ListOrdersRequest(user_id="u2001"), timeout=5).orders
    assert [o.order_id for o in default] == [o.order_id for o in everything[:10]]
    shipped = stub.ListOrders(pb.ListOrdersRequest(user_id="u2001", status="shipped"), timeout=5)
    assert [o.order_id for o in shipped.orders] == [DEMO_ORDER_IDS["u2001"]["shipped"]]
    assert not stub.ListOrders(pb.ListOrdersRequest(user_id=new_user()), timeout=5).orders
    for bad in (
        pb.ListOrdersRequest(user_id="u2001", limit=51),
        pb.ListOrdersRequest(user_id="u2001", status="lost"),
        pb.ListOrdersRequest(user_id='{"$ne": null}'),
    ):
        assert rpc_error(stub.ListOrders, bad, timeout=5).code() == grpc.StatusCode.INVALID_ARGUMENT


# --- ownership and injection ------------------------------------------------------------------


def _every_rpc(stub: pb_grpc.OrderServiceStub, user_id: str, order_id: str) -> dict[str, Any]:
    """One call of each order RPC for (user_id, order_id), as zero-argument functions."""
    address = pb.Address(
        name="Eve", phone="+1 212 555 0100", line1="1 Main St", city="NYC", country="US"
    )
    return {
        "GetOrder": lambda: stub.GetOrder(
            pb.GetOrderRequest(user_id=user_id, order_id=order_id), timeout=5
        ),
        "CancelOrder": lambda: stub.CancelOrder(
            pb.CancelOrderRequest(user_id=user_id, order_id=order_id), timeout=5
        ),
        "ChangeShippingAddress": lambda: stub.ChangeShippingAddress(
            pb.ChangeShippingAddressRequest(user_id=user_id, order_id=order_id, address=address),
            timeout=5,
        ),
        "CreateReturn": lambda: stub.CreateReturn(
            pb.CreateReturnRequest(user_id=user_id, order_id=order_id), timeout=5
        ),
        "GetRefundStatus": lambda: stub.GetRefundStatus(
            pb.GetRefundStatusRequest(user_id=user_id, order_id=order_id), timeout=5
        ),
    }


@pytest.mark.parametrize("status", ["paid", "delivered"])
def test_another_users_order_answers_exactly_like_a_missing_one(
    stub: pb_grpc.OrderServiceStub, db: Database, status: str
) -> None:
    owner, intruder = new_user(), new_user()
    order_id = make_order(db, owner, status)
    before = db["orders"].find_one({"_id": order_id})
    missing_id = "1000000001"
    assert db["orders"].find_one({"_id": missing_id}) is None
    theirs = _every_rpc(stub, intruder, order_id)
    missing = _every_rpc(stub, intruder, missing_id)
    for method, call in theirs.items():
        got, absent = rpc_error(call), rpc_error(missing[method])
        assert got.code() == absent.code() == grpc.StatusCode.NOT_FOUND, method
        assert got.details() == rules.not_found(order_id).message, method
        assert absent.details() == rules.not_found(missing_id).message, method
        assert reason_of(got) == reason_of(absent) == "order_not_found"
    assert db["orders"].find_one({"_id": order_id}) == before  # nothing changed
    assert db["returns"].find_one({"order_id": order_id}) is None


@pytest.mark.parametrize("bad", INJECTIONS)
def test_malformed_order_ids_are_rejected_before_any_query(
    stub: pb_grpc.OrderServiceStub, bad: str
) -> None:
    for method, call in _every_rpc(stub, "u1001", bad).items():
        err = rpc_error(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert "order_id" in err.details() and "10 digits" in err.details()


@pytest.mark.parametrize("bad", ['{"$ne": null}', "u1001' || '1", "", "u1001\n"])
def test_malformed_user_ids_are_rejected(stub: pb_grpc.OrderServiceStub, bad: str) -> None:
    order_id = DEMO_ORDER_IDS["u1001"]["shipped"]
    for method, call in _every_rpc(stub, bad, order_id).items():
        err = rpc_error(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert "user_id" in err.details()


# --- cancel -----------------------------------------------------------------------------------


def _cancel(stub: pb_grpc.OrderServiceStub, user: str, order_id: str) -> pb.CancelOrderResponse:
    return stub.CancelOrder(
        pb.CancelOrderRequest(user_id=user, order_id=order_id, reason="拍错了"), timeout=5
    )


def test_cancel_is_free_before_payment_and_within_a_day_of_it(
    stub: pb_grpc.OrderServiceStub, db: Database
) -> None:
    user = new_user()
    pending = _cancel(stub, user, make_order(db, user, "pending"))
    assert pending.order.status == "cancelled" and pending.fee.cents == 0
    assert pending.order.refund_status == "none"
    paid_id = make_order(db, user, "paid")
    paid = _cancel(stub, user, paid_id)
    assert paid.fee.cents == 0 and paid.order.refund_status == "pending"
    refund = stub.GetRefundStatus(
        pb.GetRefundStatusRequest(user_id=user, order_id=paid_id), timeout=5
    )
    assert refund.status == "pending" and refund.amount.cents == paid.order.total.cents
    stored = stored_order(db, paid_id)
    assert stored["cancel_reason"] == "拍错了" and stored["status"] == "cancelled"


def test_cancel_after_a_day_charges_the_stated_fee(
    stub: pb_grpc.OrderServiceStub, db: Database
) -> None:
    user = new_user()
    order_id = make_order(db, user, "paid", paid_at=now_ms() - timedelta(hours=30))
    resp = _cancel(stub, user, order_id)
    total = resp.order.total.cents
    assert resp.fee.cents == rules.cancellation_fee_cents(
        "paid", total, now_ms() - timedelta(hours=30), now_ms()
    )
    assert resp.fee.cents == total * rules.CANCELLATION_FEE_PERCENT // 100 > 0
    refund = stub.GetRefundStatus(
        pb.GetRefundStatusRequest(user_id=user, order_id=order_id), timeout=5
    )
    assert refund.amount.cents == total - resp.fee.cents


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("shipped", "order_shipped"),
        ("delivered", "order_delivered"),
        ("returned", "order_returned"),
    ],
)
def test_no_cancel_after_shipment(
    stub: pb_grpc.OrderServiceStub, db: Database, status: str, reason: str
) -> None:
    user = new_user()
    order_id = make_order(db, user, status)
    err = rpc_error(_cancel, stub, user, order_id)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and reason_of(err) == reason
    if status == "shipped":
        assert err.details() == f"order {order_id} has shipped; it can no longer be cancelled"
    assert stored_order(db, order_id)["status"] == status


def test_concurrent_cancels_cannot_both_win(stub: pb_grpc.OrderServiceStub, db: Database) -> None:
    user = new_user()
    order_id = make_order(db, user, "paid")

    def attempt(_: int) -> str:
        try:
            _cancel(stub, user, order_id)
            return "OK"
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc.details()
            return reason_of(exc)

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert outcomes.count("OK") == 1, outcomes
    assert set(outcomes) - {"OK"} <= {"already_cancelled", "concurrent_update"}
    err = rpc_error(_cancel, stub, user, order_id)
    assert reason_of(err) == "already_cancelled"


# --- shipping address -------------------------------------------------------------------------


def test_change_address_before_shipment(stub: pb_grpc.OrderServiceStub, db: Database) -> None:
    user = new_user()
    order_id = make_order(db, user, "paid")
    new = pb.Address(
        name="李娜",
        phone="+86 139 1234 5678",
        line1="天河区中山路 88 号",
        line2="3 栋 1201",
        city="广州市",
        region="广东省",
        postal_code="510000",
    )
    order = stub.ChangeShippingAddress(
        pb.ChangeShippingAddressRequest(user_id=user, order_id=order_id, address=new), timeout=5
    )
    assert order.shipping_address.city == "广州市"
    assert order.shipping_address.country == "CN"  # kept from the order when not given
    stored = stored_order(db, order_id)["shipping_address"]
    assert stored["line1"] == "天河区中山路 88 号" and stored["name"] == "李娜"


def test_change_address_validation_and_shipment_lock(
    stub: pb_grpc.OrderServiceStub, db: Database
) -> None:
    user = new_user()
    pending = make_order(db, user, "pending")
    change = stub.ChangeShippingAddress
    err = rpc_error(
        change,
        pb.ChangeShippingAddressRequest(
            user_id=user, order_id=pending, address=pb.Address(name="x" * 80, phone="abc")
        ),
        timeout=5,
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    for problem in (
        "name is longer than 50",
        "phone must be",
        "line1 is required",
        "city is required",
    ):
        assert problem in err.details()
    err = rpc_error(
        change, pb.ChangeShippingAddressRequest(user_id=user, order_id=pending), timeout=5
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "address is required" in err.details()
    shipped = make_order(db, user, "shipped")
    ok_address = pb.Address(name="王小明", phone="13800138000", line1="人民路2号", city="上海市")
    err = rpc_error(
        change,
        pb.ChangeShippingAddressRequest(user_id=user, order_id=shipped, address=ok_address),
        timeout=5,
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and reason_of(err) == "order_shipped"
    assert stored_order(db, shipped)["shipping_address"]["line1"] == "人民路1号"


# --- returns ----------------------------------------------------------------------------------


def test_return_inside_the_window_opens_a_refund(
    stub: pb_grpc.OrderServiceStub, db: Database
) -> None:
    user = new_user()
    order_id = make_order(db, user, "delivered")
    request = pb.CreateReturnRequest(
        user_id=user, order_id=order_id, product_ids=["P10001"], reason="尺码不合适"
    )
    ret = stub.CreateReturn(request, timeout=5)
    assert ret.return_id == f"R{order_id}" and list(ret.product_ids) == ["P10001"]
    assert ret.status == "requested" and ret.refund_amount.cents == 2 * 3900
    refund = stub.GetRefundStatus(
        pb.GetRefundStatusRequest(user_id=user, order_id=order_id), timeout=5
    )
    assert refund.status == "pending" and refund.amount.cents == 2 * 3900
    assert refund.requested_at.ToDatetime(tzinfo=UTC) <= datetime.now(UTC)
    saved = db["returns"].find_one({"_id": ret.return_id})
    assert saved is not None and saved["user_id"] == user
    # a retried request answers with the same return; a different one is refused
    again = stub.CreateReturn(request, timeout=5)
    assert again.return_id == ret.return_id and again.created_at == ret.created_at
    assert db["returns"].count_documents({"order_id": order_id}) == 1
    err = rpc_error(
        stub.CreateReturn, pb.CreateReturnRequest(user_id=user, order_id=order_id), timeout=5
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and reason_of(err) == "return_open"


def test_return_of_all_items_when_none_named(stub: pb_grpc.OrderServiceStub, db: Database) -> None:
    user = new_user()
    order_id = make_order(db, user, "delivered")
    ret = stub.CreateReturn(pb.CreateReturnRequest(user_id=user, order_id=order_id), timeout=5)
    assert sorted(ret.product_ids) == ["P10001", "P10050"]
    assert ret.refund_amount.cents == 2 * 3900 + 12900


def test_return_refused_outside_the_window_and_for_other_items(
    stub: pb_grpc.OrderServiceStub, db: Database
) -> None:
    user = new_user()
    delivered_at = now_ms() - timedelta(days=rules.RETURN_WINDOW_DAYS + 1)
    late = make_order(
        db, user, "delivered", return_deadline=rules.return_deadline_for(delivered_at)
    )
    err = rpc_error(
        stub.CreateReturn, pb.CreateReturnRequest(user_id=user, order_id=late), timeout=5
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(err) == "return_window_closed" and "return window" in err.details()
    fresh = make_order(db, user, "delivered")
    err = rpc_error(
        stub.CreateReturn,
        pb.CreateReturnRequest(user_id=user, order_id=fresh, product_ids=["P10001", "P10002"]),
        timeout=5,
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and reason_of(err) == "not_an_item"
    err = rpc_error(
        stub.CreateReturn,
        pb.CreateReturnRequest(user_id=user, order_id=fresh, product_ids=['{"$ne": null}']),
        timeout=5,
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    shipped = make_order(db, user, "shipped")
    err = rpc_error(
        stub.CreateReturn, pb.CreateReturnRequest(user_id=user, order_id=shipped), timeout=5
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and reason_of(err) == "not_delivered"
    assert stored_order(db, fresh)["refund"]["status"] == "none"


# --- deadlines, outages, health -----------------------------------------------------------------


def test_an_expired_deadline_is_deadline_exceeded(stub: pb_grpc.OrderServiceStub) -> None:
    request = pb.GetOrderRequest(user_id="u1001", order_id=DEMO_ORDER_IDS["u1001"]["shipped"])
    err = rpc_error(stub.GetOrder, request, timeout=0.0005)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED


class SlowLink:
    """A TCP proxy to FerretDB that delays every answer by ``delay`` seconds (a slow database)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay = 0.0
        self.port = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server:
            self.server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, slow: bool) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if slow and self.delay:
                        await asyncio.sleep(self.delay)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))


def test_the_server_stops_database_work_at_the_callers_deadline(
    loop_thread: LoopThread, settings: Settings, mongo_uri: str, db: Database
) -> None:
    link = SlowLink(int(mongo_uri.rstrip("/").rsplit(":", 1)[1]))
    loop_thread.run(link.start())
    slow_settings = load_settings(
        {"KEFU_MONGO_URI": f"mongodb://127.0.0.1:{link.port}/", "KEFU_MONGO_DB": settings.mongo_db}
    )
    labels = [{"method": "GetOrder", "code": c} for c in ("DEADLINE_EXCEEDED", "CANCELLED")]
    try:
        with (
            running_server(loop_thread, slow_settings) as running,
            grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}") as ch,
        ):
            wait_ready(running)
            slow_stub = pb_grpc.OrderServiceStub(ch)
            request = pb.GetOrderRequest(
                user_id="u1001", order_id=DEMO_ORDER_IDS["u1001"]["paid_old"]
            )
            assert slow_stub.GetOrder(request, timeout=10).status == "paid"  # the link works
            count_before = sum(metric("kefu_order_rpc_seconds_count", lb) for lb in labels)
            sum_before = sum(metric("kefu_order_rpc_seconds_sum", lb) for lb in labels)
            link.delay = 2.0
            started = time.monotonic()
            err = rpc_error(slow_stub.GetOrder, request, timeout=0.3)
            assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started < 1.0
            # The server ended its side too (it did not wait 2 s for the database): the RPC's
            # duration is recorded, with a deadline outcome, well before the answer could come.
            while sum(metric("kefu_order_rpc_seconds_count", lb) for lb in labels) == count_before:
                assert time.monotonic() - started < 1.5, "server still working after the deadline"
                time.sleep(0.02)
            spent = sum(metric("kefu_order_rpc_seconds_sum", lb) for lb in labels) - sum_before
            assert spent < 1.0
    finally:
        link.delay = 0
        loop_thread.run(link.stop())


def test_database_down_is_unavailable_and_not_ready(loop_thread: LoopThread) -> None:
    dead = load_settings(
        {"KEFU_MONGO_URI": f"mongodb://127.0.0.1:{localstack.free_port()}/", "KEFU_MONGO_DB": "x"}
    )
    with (
        running_server(loop_thread, dead) as running,
        grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}") as ch,
    ):
        body = wait_ready(running, ready=False)
        while body["mongo"]["detail"] == "not checked yet":
            time.sleep(0.1)
            body = json.loads(http_get(running.web_port, "/readyz")[1])
        assert body["mongo"]["ok"] is False and body["ready"] is False
        health = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="kefu.v1.OrderService"), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
        started = time.monotonic()
        err = rpc_error(
            pb_grpc.OrderServiceStub(ch).GetOrder,
            pb.GetOrderRequest(user_id="u1001", order_id="7730192846"),
            timeout=3,
        )
        assert (
            err.code() == grpc.StatusCode.UNAVAILABLE and reason_of(err) == "database_unavailable"
        )
        assert time.monotonic() - started < 1.0  # answered at once, not after the deadline
        bad = rpc_error(
            pb_grpc.OrderServiceStub(ch).GetOrder,
            pb.GetOrderRequest(user_id="u1001", order_id="77301"),
            timeout=3,
        )
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT  # bad input still says so


def test_health_reflection_and_metrics(
    server: RunningOrders, channel: grpc.Channel, stub: pb_grpc.OrderServiceStub
) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "kefu.v1.OrderService"):
        got = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert got.status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = list(
        reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
    )
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"kefu.v1.OrderService", "grpc.health.v1.Health"} <= names
    stub.GetOrder(pb.GetOrderRequest(user_id="u1001", order_id="7730192846"), timeout=5)
    status, text = http_get(server.web_port, "/metrics")
    assert status == 200
    assert 'kefu_order_rpc_seconds_count{code="OK",method="GetOrder"}' in text
    assert http_get(server.web_port, "/healthz")[0] == 200
    ready = wait_ready(server)
    assert ready["indexes"] is True and ready["mongo"]["ok"] is True


# --- seed ---------------------------------------------------------------------------------------


def test_seed_is_idempotent_and_indexed(settings: Settings, loop_thread: LoopThread) -> None:
    database = sync_db(settings).client[f"{settings.mongo_db}_seed"]
    first = seed(database, reset=True)
    second = seed(database, reset=True)
    assert first == second
    for name, written in first.items():
        assert database[name].count_documents({}) == written, name
    seed(database, reset=False)
    assert database["orders"].count_documents({}) == first["orders"]
    indexes = database["orders"].index_information()
    assert {"user_id_created_at", "user_id_status_created_at"} <= set(indexes)
    assert {"user_id_at", "product_id"} <= set(database["interactions"].index_information())
    catalog = load_catalog(database)
    assert len(catalog) == first["products"] >= 200
    assert [p["_id"] for p in catalog] == sorted(p["_id"] for p in catalog)

    # the async client the server uses reads the same data
    async def count_users() -> int:
        client = async_db(settings).client
        try:
            return await client[f"{settings.mongo_db}_seed"]["users"].count_documents({})
        finally:
            await client.close()  # its monitor tasks would otherwise outlive the test

    assert loop_thread.run(count_users()) == first["users"]
    database.client.drop_database(database.name)
