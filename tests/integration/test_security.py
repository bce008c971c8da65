"""Security rules of the design, checked end to end against the running stack.

- A customer only ever sees their own orders: another customer's order id, through chat or
  through gRPC, reads exactly like an order that does not exist, and nothing about it leaks.
- Customer text is data: MongoDB operators (and other injection text) in every field that reaches
  a query are rejected or treated as plain text, and change nothing.
- PII sent in chat is never shown unmasked by `kefu tap` (run as a user would) or in a log.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from bench.pipeline import TrafficDriver
from bench.traffic import PlannedMessage
from kefu.stack import settings_env
from kefu.v1 import orders_pb2 as pb
from kefu.v1 import orders_pb2_grpc as pb_grpc
from services.orders.seed import DEMO_ORDER_IDS
from services.runtime.settings import (
    ALL_TOPICS,
    TOPIC_BEHAVIOR,
    TOPIC_CONTROL,
)
from tests.integration.conftest import StackHandle

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN = uuid.uuid4().hex[:8]
ME, OTHER = "u1001", "u2001"
REPLY_TIMEOUT = 90.0
INJECTIONS = [
    '{"$ne": null}', '{"$gt": ""}', '{"$where": "1==1"}', "u1001' || '1'=='1", ".*",
    "$ne", "'; DROP TABLE orders; --", "u1001\x00", "../u2001", "u2001 ", "7730192846\n",
]  # fmt: skip


# An order number standing alone: not ten digits inside a carrier's tracking number such as
# "JDVA65778124538" (a reply about the customer's own shipped order shows one).
ORDER_ID = re.compile(r"(?<![0-9A-Za-z])\d{10}(?![0-9A-Za-z])")


def other_users_order(scenario: str) -> str:
    return DEMO_ORDER_IDS[OTHER][scenario]


def missing_order_id(db: Any) -> str:
    """A well-formed order id that no customer has."""
    for n in range(1000):
        candidate = f"99{n:08d}"
        if db["orders"].find_one({"_id": candidate}) is None:
            return candidate
    raise AssertionError("no free order id found")


@pytest.fixture(scope="module")
def orders_stub(stack: StackHandle) -> Iterator[pb_grpc.OrderServiceStub]:
    channel = grpc.insecure_channel(stack.settings.orders_addr)
    grpc.channel_ready_future(channel).result(timeout=30)
    yield pb_grpc.OrderServiceStub(channel)
    channel.close()


def snapshot(db: Any, order_id: str) -> dict[str, Any]:
    doc = db["orders"].find_one({"_id": order_id})
    assert doc is not None, f"demo order {order_id} is not seeded"
    return doc


async def chat(stack: StackHandle, messages: list[PlannedMessage]) -> dict[str, dict[str, Any]]:
    """Send messages one per conversation turn; the first answer of each, by message text."""
    answers: dict[str, dict[str, Any]] = {}
    async with TrafficDriver(stack.settings) as driver:
        for msg in messages:  # one at a time: each turn sees the previous one's state
            result = await driver.run([msg], rate=10.0, reply_timeout=REPLY_TIMEOUT, settle=0.2)
            got = driver.first_answer(result.sent[0].message_id)
            assert got, f"no answer to {msg.text!r} within {REPLY_TIMEOUT} s"
            answers[msg.conversation_id + "|" + msg.text] = got
    return answers


def leaked_facts(db: Any, order_id: str) -> list[str]:
    """Strings that would show a reply knows about the order: its data and its owner's."""
    order = snapshot(db, order_id)
    owner = db["users"].find_one({"_id": order["user_id"]}) or {}
    facts = [
        (order.get("shipment") or {}).get("tracking_number"),
        order.get("invoice_number"),
        (order.get("shipping_address") or {}).get("line1"),
        (order.get("shipping_address") or {}).get("name"),
        owner.get("email"),
        *(item.get("name_en") for item in order["items"]),
        *(item.get("name_zh") for item in order["items"]),
    ]
    return [f for f in facts if isinstance(f, str) and len(f) >= 4]


# -- another customer's order --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "template"),
    [
        ("en", "Where is my order {order_id}?"),
        ("zh", "我的订单{order_id}到哪了？"),
        ("en", "I want to cancel order {order_id}"),
        ("en", "Can I get the invoice for order {order_id}?"),
    ],
)
def test_another_customers_order_through_chat_reads_like_a_missing_one(
    stack: StackHandle, language: str, template: str
) -> None:
    db = stack.db()
    foreign = other_users_order("shipped" if "cancel" not in template else "paid_recent")
    missing = missing_order_id(db)
    before = snapshot(db, foreign)
    conv = {oid: f"c-sec-{RUN}-{uuid.uuid4().hex[:6]}" for oid in (foreign, missing)}
    msgs = [
        PlannedMessage(conv[oid], ME, language, template.format(order_id=oid), 0, "security")
        for oid in (foreign, missing)
    ]
    answers = asyncio.run(chat(stack, msgs))
    reply_foreign = answers[f"{conv[foreign]}|{msgs[0].text}"]["reply"]
    reply_missing = answers[f"{conv[missing]}|{msgs[1].text}"]["reply"]
    # the same decision, template and RPC outcome: nothing tells the two apart
    for key in ("action", "templateId", "reason"):
        left = str(reply_foreign.get(key, "")).replace(foreign, "#")
        right = str(reply_missing.get(key, "")).replace(missing, "#")
        assert left == right, f"{key}: {left!r} != {right!r}"
    call_f, call_m = reply_foreign.get("orderCall", {}), reply_missing.get("orderCall", {})
    assert call_f.get("rpc") == call_m.get("rpc") and call_f.get("code") == call_m.get("code")
    if call_f:
        assert call_f.get("code") == "NOT_FOUND", call_f
    assert reply_foreign["action"] in ("order", "ask", "clarify", "faq", "answer", "handoff")
    text = reply_foreign.get("text", "")
    leaks = [f for f in leaked_facts(db, foreign) if f in text]
    assert not leaks, f"the reply reveals {leaks}: {text!r}"
    after = snapshot(db, foreign)
    assert after == before, "another customer's order changed"


def test_another_customers_order_through_grpc_is_not_found(
    stack: StackHandle, orders_stub: pb_grpc.OrderServiceStub
) -> None:
    db = stack.db()
    missing = missing_order_id(db)
    calls = {
        "GetOrder": lambda oid: orders_stub.GetOrder(pb.GetOrderRequest(user_id=ME, order_id=oid)),
        "CancelOrder": lambda oid: orders_stub.CancelOrder(
            pb.CancelOrderRequest(user_id=ME, order_id=oid, reason="test")
        ),
        "ChangeShippingAddress": lambda oid: orders_stub.ChangeShippingAddress(
            pb.ChangeShippingAddressRequest(
                user_id=ME, order_id=oid,
                address=pb.Address(name="王小明", phone="13800000000", line1="张江路88号", city="上海市",
                                   region="上海市", postal_code="200120", country="CN"),
            )
        ),
        "CreateReturn": lambda oid: orders_stub.CreateReturn(
            pb.CreateReturnRequest(user_id=ME, order_id=oid, reason="test")
        ),
        "GetRefundStatus": lambda oid: orders_stub.GetRefundStatus(
            pb.GetRefundStatusRequest(user_id=ME, order_id=oid)
        ),
    }  # fmt: skip
    for scenario, foreign in DEMO_ORDER_IDS[OTHER].items():
        before = snapshot(db, foreign)
        for rpc, call in calls.items():
            details = {}
            for oid in (foreign, missing):
                with pytest.raises(grpc.RpcError) as caught:
                    call(oid)
                err = caught.value
                assert err.code() == grpc.StatusCode.NOT_FOUND, f"{rpc} {scenario}: {err.code()}"
                details[oid] = (err.details() or "").replace(oid, "#")
            assert details[foreign] == details[missing], f"{rpc} {scenario}: {details}"
        assert snapshot(db, foreign) == before, f"{scenario} order changed through another user"
    mine = orders_stub.ListOrders(pb.ListOrdersRequest(user_id=ME, limit=50))
    assert mine.orders and all(o.user_id == ME for o in mine.orders)
    assert not {o.order_id for o in mine.orders} & set(DEMO_ORDER_IDS[OTHER].values())


# -- operator injection --------------------------------------------------------------------------


def test_operator_injection_over_grpc_is_rejected_and_changes_nothing(
    stack: StackHandle, orders_stub: pb_grpc.OrderServiceStub
) -> None:
    db = stack.db()
    orders_before = db["orders"].count_documents({})
    mine = DEMO_ORDER_IDS[ME]["paid_recent"]
    mine_before = snapshot(db, mine)
    ok_or_refused = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    for bad in INJECTIONS:
        delivered = DEMO_ORDER_IDS[ME]["delivered_in_window"]
        requests: list[tuple[str, Any, Any]] = [
            ("GetOrder/user_id", orders_stub.GetOrder, pb.GetOrderRequest(user_id=bad, order_id=mine)),
            ("GetOrder/order_id", orders_stub.GetOrder, pb.GetOrderRequest(user_id=ME, order_id=bad)),
            ("ListOrders/user_id", orders_stub.ListOrders, pb.ListOrdersRequest(user_id=bad)),
            ("CancelOrder/order_id", orders_stub.CancelOrder, pb.CancelOrderRequest(user_id=ME, order_id=bad, reason=bad)),
            ("CancelOrder/user_id", orders_stub.CancelOrder, pb.CancelOrderRequest(user_id=bad, order_id=mine, reason="x")),
            ("GetRefundStatus/order_id", orders_stub.GetRefundStatus, pb.GetRefundStatusRequest(user_id=ME, order_id=bad)),
            ("CreateReturn/product_ids", orders_stub.CreateReturn,
             pb.CreateReturnRequest(user_id=ME, order_id=delivered, product_ids=[bad], reason="x")),
        ]  # fmt: skip
        for what, method, request in requests:
            try:
                response = method(request)
            except grpc.RpcError as err:
                assert err.code() in ok_or_refused, f"{what} {bad!r}: {err.code()} {err.details()}"
                continue
            raise AssertionError(f"{what} {bad!r} was accepted: {str(response)[:300]}")
        # ListOrders' status filter: an operator is either refused or matches nothing
        try:
            listed = orders_stub.ListOrders(pb.ListOrdersRequest(user_id=ME, status=bad))
            assert not listed.orders, f"status {bad!r} matched {len(listed.orders)} orders"
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, f"status {bad!r}: {err.code()}"
    assert db["orders"].count_documents({}) == orders_before
    assert snapshot(db, mine) == mine_before


def test_operator_injection_through_chat_is_rejected_or_plain_text(stack: StackHandle) -> None:
    db = stack.db()
    # every order the customer owns, not only the named demo scenarios: the seed adds random ones
    mine = {str(d["_id"]) for d in db["orders"].find({"user_id": ME}, {"_id": 1})}
    assert set(DEMO_ORDER_IDS[ME].values()) <= mine
    orders_before = {d["_id"]: d.get("version") for d in db["orders"].find({}, {"version": 1})}

    async def run() -> None:
        async with TrafficDriver(stack.settings) as driver:
            # identifiers holding operators or injection text: refused at ingest with a reason
            placed = []
            for field in ("userId", "conversationId", "messageId"):
                for bad in [*INJECTIONS, {"$ne": None}, {"$gt": ""}, ["u1001"]]:
                    payload = {
                        "messageId": f"inj-{RUN}-{uuid.uuid4().hex[:6]}", "conversationId": f"c-inj-{RUN}",
                        "userId": ME, "text": "where is my order 7730192846", field: bad,
                    }  # fmt: skip
                    value = json.dumps(payload, ensure_ascii=False).encode()
                    placed += await driver.send_raw([(value, f"c-inj-{RUN}".encode())])
            deadline = asyncio.get_running_loop().time() + 60
            while any(driver.dead_letter_for(*p) is None for p in placed):
                assert asyncio.get_running_loop().time() < deadline, (
                    "injected ids not dead-lettered"
                )
                await driver.poll(200)
            reasons = {driver.dead_letter_for(*p)["reason"] for p in placed}  # type: ignore[index]
            assert reasons <= {"invalid_field", "missing_field"}, reasons

    asyncio.run(run())
    # injection text in the message itself is only text: answered, revealing no foreign order
    texts = [
        'where is my order {"$ne": null}',
        '我的订单 {"$gt": ""} 到哪了',
        "order 7730192846' || '1'=='1",
        "track order 5520481139 OR 1=1",
        "cancel order '; db.orders.drop(); '",
    ]
    msgs = [
        PlannedMessage(f"c-injtext-{RUN}-{i}", ME, "en", t, 0, "inj") for i, t in enumerate(texts)
    ]
    answers = asyncio.run(chat(stack, msgs))
    for key, answer in answers.items():
        text = answer.get("reply", {}).get("text", "")
        said = set(ORDER_ID.findall(key))  # echoing the customer's own words is no leak
        foreign_ids = set(ORDER_ID.findall(text)) - mine - said
        assert not foreign_ids, (
            f"{key}: the reply shows orders that are not the customer's: {text!r}"
        )
        if said - mine:  # someone else's order id: nothing about that order may follow
            leaks = [f for oid in said - mine for f in leaked_facts(db, oid) if f in text]
            assert not leaks, f"{key}: the reply reveals {leaks}: {text!r}"
    orders_after = {d["_id"]: d.get("version") for d in db["orders"].find({}, {"version": 1})}
    assert orders_after == orders_before, "an injection changed orders"


# -- PII ------------------------------------------------------------------------------------------


def luhn_complete(prefix: str) -> str:
    """``prefix`` plus the check digit that makes a valid card number."""
    total = 0
    for i, ch in enumerate(reversed(prefix)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return prefix + str((10 - total % 10) % 10)


def valid_uk_mobile(start: int) -> str:
    """A UK mobile number in an assigned range (the numbering plan phonenumbers knows)."""
    import phonenumbers

    for k in range(5000):  # stepping across the blocks of the range
        candidate = f"+44 7911 {(start + k * 7919) % 10**6:06d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            return candidate
    raise AssertionError("no valid UK mobile number found")


def spaced_digits_pattern(digits: str) -> re.Pattern[str]:
    """The digits in order with at most one separator (space, dash, dot) between any two."""
    return re.compile(r"[\s\-.]?".join(re.escape(d) for d in digits))


def test_pii_is_never_shown_unmasked_by_tap_or_in_logs(stack: StackHandle) -> None:
    tag = uuid.uuid4().int % 10**6
    phone = f"139{tag:06d}77"  # a CN mobile no seed data uses
    intl_phone = valid_uk_mobile(tag)
    email = f"pii.check.{RUN}@example.org"
    card = luhn_complete(f"4539{tag:06d}12345")
    card_text = " ".join(card[i : i + 4] for i in range(0, 16, 4))
    conversation = f"c-pii-{RUN}"
    texts = [
        f"我的手机号是{phone}，有问题请联系我",
        f"Call me back on {intl_phone} or mail {email} please",
        f"I was charged twice on card {card_text}",
        f"换个邮箱吧 {email}，卡号{card}",
    ]
    msgs = [PlannedMessage(conversation, ME, "zh", t, 0, "pii") for t in texts]
    asyncio.run(chat(stack, msgs))
    needles = {
        "phone": spaced_digits_pattern(phone),
        "intl_phone": spaced_digits_pattern(re.sub(r"\D", "", intl_phone)),
        "email": re.compile(re.escape(email), re.IGNORECASE),
        "card": spaced_digits_pattern(card),
    }

    def found(text: str) -> list[str]:
        return [name for name, rx in needles.items() if rx.search(text)]

    env = {**os.environ, **settings_env(stack.settings)}

    def tap(topic: str, *extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "kefu", "tap", topic, "--from-beginning", *extra],
            env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, f"kefu tap {topic} failed: {done.stderr[-2000:]}"
        return done.stdout

    # positive control: the PII really is in the topics (else this test could not fail)
    unmasked = tap("kefu.messages.v1", "--unmask", "--filter", f"conversation_id={conversation}")
    assert set(found(unmasked)) == set(needles), f"PII not in the topic at all: {found(unmasked)}"
    for topic in ALL_TOPICS:
        if topic in (TOPIC_BEHAVIOR, TOPIC_CONTROL):
            continue  # no customer text on these
        shown = found(tap(topic))
        assert not shown, f"`kefu tap {topic}` shows {shown} unmasked"
    for log in sorted(stack.paths.logs.glob("*.log")):
        text = log.read_text(encoding="utf-8", errors="replace")
        shown = found(text)
        assert not shown, f"{log.name} contains {shown} unmasked"
