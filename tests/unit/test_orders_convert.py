"""Document → proto conversion, and how database failures map to gRPC status codes."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from pymongo.errors import (
    AutoReconnect,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from services.orders.convert import order_to_proto, refund_to_proto, return_to_proto
from services.orders.server import failure_for_mongo_error

PAID = datetime(2025, 6, 1, 8, 30, 15, 123000, tzinfo=UTC)


def test_order_to_proto_keeps_money_in_cents_and_unset_times_unset() -> None:
    order = order_to_proto(
        {
            "_id": "7730192801",
            "user_id": "u1001",
            "status": "pending",
            "items": [
                {
                    "product_id": "P10001",
                    "name_zh": "手机壳",
                    "name_en": "Phone case",
                    "quantity": 2,
                    "unit_price_cents": 3900,
                }
            ],
            "total_cents": 7800,
            "currency": "CNY",
            "shipping_address": {"name": "王小明", "city": "上海市", "country": "CN"},
            "shipment": None,
            "created_at": PAID,
            "paid_at": None,
            "refund": {"status": "none"},
        }
    )
    assert order.total.cents == 7800 and order.total.currency == "CNY"
    assert order.items[0].unit_price.cents == 3900 and order.items[0].quantity == 2
    assert order.shipping_address.city == "上海市"
    assert order.created_at.ToDatetime(tzinfo=UTC) == PAID
    assert not order.HasField("paid_at") and not order.HasField("shipment")
    assert not order.HasField("return_deadline")
    assert order.refund_status == "none"


def test_shipment_and_refund_times_survive_conversion() -> None:
    doc = {
        "_id": "7730192846",
        "status": "delivered",
        "shipment": {"carrier": "顺丰", "tracking_number": "SF1", "delivered_at": PAID},
        "refund": {
            "status": "done",
            "amount_cents": 500,
            "requested_at": PAID,
            "completed_at": PAID,
        },
    }
    order = order_to_proto(doc)
    assert order.shipment.carrier == "顺丰"
    assert order.shipment.delivered_at.ToDatetime(tzinfo=UTC) == PAID
    assert not order.shipment.HasField("eta")
    refund = refund_to_proto(doc)
    assert refund.status == "done" and refund.amount.cents == 500
    assert refund.completed_at.ToDatetime(tzinfo=UTC) == PAID


def test_return_to_proto() -> None:
    ret = return_to_proto(
        {
            "_id": "R7730192846",
            "order_id": "7730192846",
            "product_ids": ["P10001"],
            "reason": "尺码不合适",
            "status": "requested",
            "refund_amount_cents": 3900,
            "created_at": PAID,
        }
    )
    assert ret.return_id == "R7730192846" and list(ret.product_ids) == ["P10001"]
    assert ret.refund_amount.cents == 3900 and ret.refund_amount.currency == "CNY"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ServerSelectionTimeoutError("no servers"), grpc.StatusCode.UNAVAILABLE),
        (AutoReconnect("connection reset"), grpc.StatusCode.UNAVAILABLE),
        (NetworkTimeout("timed out"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (ExecutionTimeout("operation exceeded time limit", 50), grpc.StatusCode.DEADLINE_EXCEEDED),
        (OperationFailure("bad query", 2), grpc.StatusCode.INTERNAL),
        (PyMongoError("something else"), grpc.StatusCode.INTERNAL),
    ],
)
def test_database_errors_map_to_grpc_codes(error: PyMongoError, code: grpc.StatusCode) -> None:
    failure = failure_for_mongo_error(error)
    assert failure.code is code
    assert failure.message and failure.reason
