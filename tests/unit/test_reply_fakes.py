"""A fake OrderService and a conversation driver for the reply stage's unit tests (pure logic).

The fake keeps orders per user and answers like OrderService: NOT_FOUND for an order that is not
the caller's, FAILED_PRECONDITION for rule refusals, UNAVAILABLE while ``down`` is set.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from kefu.v1 import orders_pb2
from services.reply.decide import Decision, Deps, EntityRef, Recommended, Turn, decide
from services.reply.faq import THRESHOLD as FAQ_THRESHOLD
from services.reply.faq import FaqHit
from services.reply.orders_client import OrderCallResult
from services.reply.state import DialogueState

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
CASE = ("P10001", "硅胶手机壳", "Silicone Phone Case", 1, 5900)
EARBUDS = ("P10002", "无线蓝牙耳机", "Wireless Earbuds", 1, 19900)
MUG = ("P10003", "陶瓷马克杯", "Ceramic Mug", 2, 3500)


def ts(when: dt.datetime) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    t = Timestamp()
    t.FromDatetime(when)
    return t


def make_order(
    order_id: str,
    user_id: str,
    status: str,
    items: tuple[tuple[str, str, str, int, int], ...] = (CASE,),
    *,
    paid_hours_ago: float | None = 1.0,
    delivered_days_ago: float | None = None,
    refund_status: str = "none",
    invoice: str = "",
) -> orders_pb2.Order:
    order = orders_pb2.Order(
        order_id=order_id,
        user_id=user_id,
        status=status,
        refund_status=refund_status,
        invoice_number=invoice,
    )
    total = 0
    for pid, zh, en, qty, cents in items:
        order.items.add(
            product_id=pid,
            name_zh=zh,
            name_en=en,
            quantity=qty,
            unit_price=orders_pb2.Money(currency="CNY", cents=cents),
        )
        total += qty * cents
    order.total.CopyFrom(orders_pb2.Money(currency="CNY", cents=total))
    order.shipping_address.CopyFrom(
        orders_pb2.Address(
            name="王小明", phone="13800138000", line1="旧地址1号", city="上海市", country="CN"
        )
    )
    order.created_at.CopyFrom(ts(NOW - dt.timedelta(days=3)))
    if paid_hours_ago is not None and status != "pending":
        order.paid_at.CopyFrom(ts(NOW - dt.timedelta(hours=paid_hours_ago)))
    if status in ("shipped", "delivered"):
        order.shipment.carrier = "顺丰"
        order.shipment.tracking_number = "SF1234567890123"
        order.shipment.eta.CopyFrom(ts(NOW + dt.timedelta(days=2)))
    if delivered_days_ago is not None:
        delivered = NOW - dt.timedelta(days=delivered_days_ago)
        order.shipment.delivered_at.CopyFrom(ts(delivered))
        order.return_deadline.CopyFrom(ts(delivered + dt.timedelta(days=7)))
    return order


@dataclass
class FakeOrders:
    orders: list[orders_pb2.Order]
    down: bool = False
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (rpc, user, order)
    last_request: dict[str, Any] = field(default_factory=dict)

    def _find(self, user_id: str, order_id: str) -> orders_pb2.Order | None:
        return next(
            (o for o in self.orders if o.order_id == order_id and o.user_id == user_id), None
        )

    def _result(self, rpc: str, user: str, oid: str) -> OrderCallResult | None:
        self.calls.append((rpc, user, oid))
        if self.down:
            return OrderCallResult(rpc, "UNAVAILABLE", oid, detail="connection refused")
        return None

    async def get_order(self, user_id: str, order_id: str) -> OrderCallResult:
        if (r := self._result("GetOrder", user_id, order_id)) is not None:
            return r
        order = self._find(user_id, order_id)
        if order is None:
            return OrderCallResult("GetOrder", "NOT_FOUND", order_id, detail=f"no order {order_id}")
        return OrderCallResult("GetOrder", "OK", order_id, 1.0, order)

    async def list_orders(self, user_id: str, limit: int = 10) -> OrderCallResult:
        if (r := self._result("ListOrders", user_id, "")) is not None:
            return r
        mine = [o for o in self.orders if o.user_id == user_id][:limit]
        return OrderCallResult(
            "ListOrders", "OK", "", 1.0, orders_pb2.ListOrdersResponse(orders=mine)
        )

    async def cancel_order(self, user_id: str, order_id: str, reason: str) -> OrderCallResult:
        if (r := self._result("CancelOrder", user_id, order_id)) is not None:
            return r
        order = self._find(user_id, order_id)
        if order is None:
            return OrderCallResult("CancelOrder", "NOT_FOUND", order_id)
        if order.status not in ("pending", "paid"):
            return OrderCallResult(
                "CancelOrder", "FAILED_PRECONDITION", order_id, reason="order_shipped"
            )
        order.status = "cancelled"
        resp = orders_pb2.CancelOrderResponse(
            order=order, fee=orders_pb2.Money(currency="CNY", cents=0)
        )
        return OrderCallResult("CancelOrder", "OK", order_id, 1.0, resp)

    async def change_shipping_address(
        self, user_id: str, order_id: str, address: orders_pb2.Address
    ) -> OrderCallResult:
        if (r := self._result("ChangeShippingAddress", user_id, order_id)) is not None:
            return r
        order = self._find(user_id, order_id)
        if order is None:
            return OrderCallResult("ChangeShippingAddress", "NOT_FOUND", order_id)
        self.last_request["address"] = address
        if not (address.line1 and address.city):  # as the real servicer's validate_address
            return OrderCallResult(
                "ChangeShippingAddress", "INVALID_ARGUMENT", order_id, detail="city is required"
            )
        order.shipping_address.CopyFrom(address)
        return OrderCallResult("ChangeShippingAddress", "OK", order_id, 1.0, order)

    async def create_return(
        self, user_id: str, order_id: str, product_ids: list[str], reason: str
    ) -> OrderCallResult:
        if (r := self._result("CreateReturn", user_id, order_id)) is not None:
            return r
        order = self._find(user_id, order_id)
        if order is None:
            return OrderCallResult("CreateReturn", "NOT_FOUND", order_id)
        self.last_request.update(product_ids=list(product_ids), reason=reason)
        chosen = [i for i in order.items if not product_ids or i.product_id in product_ids]
        refund = sum(i.unit_price.cents * i.quantity for i in chosen)
        resp = orders_pb2.ReturnRequest(
            return_id=f"R{order_id}",
            order_id=order_id,
            product_ids=[i.product_id for i in chosen],
            reason=reason,
            status="requested",
            refund_amount=orders_pb2.Money(currency="CNY", cents=refund),
        )
        return OrderCallResult("CreateReturn", "OK", order_id, 1.0, resp)

    async def get_refund_status(self, user_id: str, order_id: str) -> OrderCallResult:
        if (r := self._result("GetRefundStatus", user_id, order_id)) is not None:
            return r
        order = self._find(user_id, order_id)
        if order is None:
            return OrderCallResult("GetRefundStatus", "NOT_FOUND", order_id)
        resp = orders_pb2.RefundStatus(
            order_id=order_id, status=order.refund_status, amount=order.total
        )
        resp.requested_at.CopyFrom(ts(NOW - dt.timedelta(days=1)))
        return OrderCallResult("GetRefundStatus", "OK", order_id, 1.0, resp)


@dataclass
class FakeFaq:
    """Answers when the text contains one of its keys (stands in for semantic search)."""

    entries: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (faq_id, answer)
    scores: dict[str, float] = field(default_factory=dict)  # key -> its score (default 0.97)

    async def lookup(
        self, turn: Turn, threshold: float | None = None, among: Collection[str] | None = None
    ) -> FaqHit | None:
        for key, (faq_id, answer) in self.entries.items():
            score = self.scores.get(key, 0.97)
            if among is not None and faq_id not in among:
                continue
            if key in turn.text and score >= (FAQ_THRESHOLD if threshold is None else threshold):
                return FaqHit(faq_id, score, answer, turn.language)
        return None


_ORDER_ID = re.compile(r"(?<!\d)\d{10}(?!\d)")


@dataclass
class Chat:
    """Drives one conversation through ``decide`` like the stage does, turn by turn."""

    orders: FakeOrders
    user_id: str = "u1001"
    language: str = "en"
    faq: FakeFaq | None = None
    state: DialogueState = field(default_factory=lambda: DialogueState("conv-1"))
    turns: list[Decision] = field(default_factory=list)

    def say(
        self,
        text: str,
        intent: str = "",
        confidence: float = 0.95,
        *,
        ranking: tuple[tuple[str, float], ...] = (),
        sentiment: str = "neutral",
        negative: float = 0.0,
        escalate: bool = False,
        products: tuple[str, ...] = (),
        product_score: float = 1.0,  # nlu's: low for a bare kind ("手机壳") matching many
        product_texts: tuple[str, ...] = (),  # how each product is written (its id if not given)
        recommendations: tuple[Recommended, ...] = (),
        requested: bool = False,
        out_of_scope: bool = False,
        language: str = "",
        language_confidence: float = 1.0,
    ) -> Decision:
        entities = [EntityRef("order_id", m.group(), m.group()) for m in _ORDER_ID.finditer(text)]
        written = product_texts + products[len(product_texts) :]
        entities += [
            EntityRef("product", w, p, product_score)
            for w, p in zip(written, products, strict=True)
        ]
        turn = Turn(
            message_id=f"m{len(self.turns) + 1}",
            conversation_id=self.state.conversation_id,
            user_id=self.user_id,
            text=text,
            masked_text=text,
            language=language or self.language,
            language_confidence=language_confidence,
            intent=intent,
            confidence=confidence,
            ranking=ranking or ((intent, confidence),),
            out_of_scope=out_of_scope or intent == "out_of_scope",
            entities=tuple(entities),
            sentiment=sentiment,
            negative_score=negative,
            escalate=escalate,
            recommendations=recommendations,
            suggestions_requested=requested,
        )
        deps = Deps(orders=self.orders, faq=self.faq, now=lambda: NOW)
        decision = asyncio.run(decide(turn, self.state, deps))
        self.turns.append(decision)
        return decision
