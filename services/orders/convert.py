"""MongoDB documents → kefu.v1 OrderService messages (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from kefu.v1 import orders_pb2 as pb
from services.orders.rules import ADDRESS_FIELDS, CURRENCY


def _set_time(target: Timestamp, value: Any) -> None:
    # Unset stays unset (no 1970 dates for "not shipped yet").
    if isinstance(value, datetime):
        target.FromDatetime(value)


def money(cents: int, currency: str = CURRENCY) -> pb.Money:
    return pb.Money(currency=currency or CURRENCY, cents=int(cents))


def address_to_proto(doc: Mapping[str, Any] | None) -> pb.Address:
    doc = doc or {}
    return pb.Address(**{name: str(doc.get(name) or "") for name in ADDRESS_FIELDS})


def address_from_proto(address: pb.Address) -> dict[str, str]:
    return {name: getattr(address, name) for name in ADDRESS_FIELDS}


def order_to_proto(doc: Mapping[str, Any]) -> pb.Order:
    currency = str(doc.get("currency") or CURRENCY)
    order = pb.Order(
        order_id=str(doc["_id"]),
        user_id=str(doc.get("user_id", "")),
        status=str(doc.get("status", "")),
        total=money(int(doc.get("total_cents", 0)), currency),
        shipping_address=address_to_proto(doc.get("shipping_address")),
        refund_status=str((doc.get("refund") or {}).get("status") or "none"),
        invoice_number=str(doc.get("invoice_number") or ""),
        payment_method=str(doc.get("payment_method") or ""),
    )
    for item in doc.get("items") or []:
        order.items.append(
            pb.OrderItem(
                product_id=str(item.get("product_id", "")),
                name_zh=str(item.get("name_zh", "")),
                name_en=str(item.get("name_en", "")),
                quantity=int(item.get("quantity", 0)),
                unit_price=money(int(item.get("unit_price_cents", 0)), currency),
            )
        )
    shipment = doc.get("shipment")
    if shipment:
        order.shipment.carrier = str(shipment.get("carrier") or "")
        order.shipment.tracking_number = str(shipment.get("tracking_number") or "")
        _set_time(order.shipment.shipped_at, shipment.get("shipped_at"))
        _set_time(order.shipment.eta, shipment.get("eta"))
        _set_time(order.shipment.delivered_at, shipment.get("delivered_at"))
    _set_time(order.created_at, doc.get("created_at"))
    _set_time(order.paid_at, doc.get("paid_at"))
    _set_time(order.return_deadline, doc.get("return_deadline"))
    return order


def refund_to_proto(doc: Mapping[str, Any]) -> pb.RefundStatus:
    refund = doc.get("refund") or {}
    status = pb.RefundStatus(
        order_id=str(doc["_id"]),
        status=str(refund.get("status") or "none"),
        amount=money(int(refund.get("amount_cents") or 0), str(doc.get("currency") or CURRENCY)),
    )
    _set_time(status.requested_at, refund.get("requested_at"))
    _set_time(status.completed_at, refund.get("completed_at"))
    return status


def return_to_proto(doc: Mapping[str, Any]) -> pb.ReturnRequest:
    request = pb.ReturnRequest(
        return_id=str(doc["_id"]),
        order_id=str(doc.get("order_id", "")),
        product_ids=[str(p) for p in doc.get("product_ids") or []],
        reason=str(doc.get("reason") or ""),
        status=str(doc.get("status") or "requested"),
        refund_amount=money(
            int(doc.get("refund_amount_cents") or 0), str(doc.get("currency") or CURRENCY)
        ),
    )
    _set_time(request.created_at, doc.get("created_at"))
    return request
