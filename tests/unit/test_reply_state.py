"""Dialogue state documents, transcript records, handoff signals and input validation."""

from __future__ import annotations

import pytest

from kefu.v1.events_pb2 import Envelope, ReplySection
from services.reply import handoff
from services.reply.app import handoff_doc, validate_ids
from services.reply.state import DialogueState, Handoff, OrderChoice, PastTurn, Pending
from services.reply.transcript import CLAIMED, turn_doc
from services.runtime.envelope import EnvelopeError


def test_state_document_round_trip_with_pending_choices() -> None:
    state = DialogueState("c1", user_id="u1001", turn=3, rotation={"intent:review": 1})
    state.pending = Pending(
        "track_order",
        "order_choice",
        choices=[OrderChoice("7730192846", "shipped", ["Case"], ["手机壳"], ["P1"])],
    )
    state.paused = Pending("change_shipping_address", "order_choice", choices=[OrderChoice("1")])
    state.paused_turn = 2
    state.suggested = ["降噪耳机 ¥199.00"]
    state.handoff = Handoff(active=True, reason="dispute")
    for n in range(10):
        state.remember(PastTurn(n, f"text {n}", "track_order", "ask", "neutral"))
    doc = state.to_doc()
    assert doc["_id"] == "c1" and "conversation_id" not in doc
    assert len(doc["history"]) == 6  # only the recent turns are kept
    again = DialogueState.from_doc({**doc, "unknown_field": 1})
    assert again == state
    assert again.slots() == {
        "turn": "3",
        "pending_intent": "track_order",
        "awaiting": "order_choice",
        "choices": "7730192846",
        "handoff": "dispute",
    }


def test_old_documents_without_new_fields_still_load() -> None:
    state = DialogueState.from_doc(
        {"_id": "c2", "turn": 2, "pending": {"intent": "x", "awaiting": "retry"}}
    )
    assert state.turn == 2 and state.pending is not None and state.pending.choices == []


def test_transcript_record_keeps_masked_text_only() -> None:
    env = Envelope(
        message_id="m1",
        conversation_id="c1",
        user_id="u1001",
        text="call 13800138000",
        masked_text="call [PHONE]",
        language="en",
    )
    env.nlu.intent = "contact_customer_service"
    env.nlu.entities.add(type="phone", text="13800138000", value="13800138000")
    env.nlu.entities.add(type="order_id", text="7730192846", value="7730192846")
    reply = ReplySection(action="answer", text="hi", language="en", turn=2)
    doc = turn_doc(env, reply, 12.5, {"_id": "c1"}, handoff_event=False)
    assert doc["_id"] == "m1" and doc["state"] == CLAIMED and doc["turn"] == 2
    assert doc["text"] == "call [PHONE]" and "13800138000" not in str(doc)
    assert {"type": "order_id", "value": "7730192846"} in doc["entities"]
    assert doc["reply"]["action"] == "answer" and doc["latency_ms"] == 12.5


def test_handoff_record_and_summary() -> None:
    state = DialogueState("c1", turn=4, last_order_id="7730192846")
    state.remember(PastTurn(1, "where is it", "track_order", "ask", "neutral"))
    state.remember(PastTurn(2, "cancel it", "cancel_order", "ask", "negative"))
    text = handoff.summary(state, "dispute", "you charged me twice", "en")
    assert "dispute" in text and "7730192846" in text and "Track an order, Cancel an order" in text
    assert "you charged me twice" in text
    zh = handoff.summary(state, "customer_request", "转人工", "zh")
    assert "客户要求人工" in zh and "查询物流" in zh
    env = Envelope(message_id="m9", conversation_id="c1", user_id="u1001")
    reply = ReplySection(
        action="handoff",
        language="zh",
        handoff_reason="dispute",
        handoff_priority="high",
        handoff_summary=zh,
    )
    record = handoff_doc(env, reply)
    assert record["_id"] == "m9" and record["status"] == "open" and record["priority"] == "high"


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        ("I was charged twice!", True),
        ("I'll file a chargeback", True),
        ("我被重复扣款了", True),
        ("我要去消协投诉", True),
        ("my lawyer will call", True),
        ("someone logged into my account and placed orders i didnt make", True),
        ("我的账号被盗了 有人用我的账号下单", True),
        ("账号好像被盗了，有几个订单不是我下的", True),
        ("这个订单不是我下的", True),
        ("my package was stolen from my porch", True),
        ("I received someone else's package", True),
        ("我的包裹被人偷了", True),
        ("快递丢了", True),
        ("收到了别人的快递", True),
        ("where is my order", False),
        ("I didn't get my order", False),
        ("I lost my password", False),
        ("快递到了吗", False),
        ("this issue is annoying", False),
        ("两件商品", False),
    ],
)
def test_dispute_signals(text: str, signal: bool) -> None:
    assert (handoff.dispute_signal(text) is not None) is signal


def test_sentiment_trend() -> None:
    state = DialogueState("c1")
    for label in ("negative", "negative"):
        handoff.update_sentiment(state, label, 0.8)
    assert not handoff.getting_worse(state)
    handoff.update_sentiment(state, "negative", 0.9)
    assert handoff.getting_worse(state)
    handoff.update_sentiment(state, "neutral", 0.1)
    assert state.negative_streak == 0 and len(state.negative_scores) == 4


def test_mildly_negative_requests_do_not_build_a_streak() -> None:
    # plain return/refund requests score ~0.55-0.6 negative: three of them are not frustration
    state = DialogueState("c2")
    for score in (0.6, 0.81, 0.59):
        handoff.update_sentiment(state, "negative", score)
    assert state.negative_streak == 0 and not handoff.getting_worse(state)
    for score in (0.7, 0.9, 0.95):
        handoff.update_sentiment(state, "negative", score)
    assert handoff.getting_worse(state)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"conversation_id": "c", "user_id": "u"}, "missing_field"),
        ({"message_id": "m", "conversation_id": "c", "user_id": '{"$gt": ""}'}, "invalid_field"),
        ({"message_id": "m m", "conversation_id": "c", "user_id": "u"}, "invalid_field"),
    ],
)
def test_identifiers_are_validated(fields: dict[str, str], reason: str) -> None:
    env = Envelope()
    for name, value in fields.items():
        setattr(env, name, value)
    with pytest.raises(EnvelopeError) as info:
        validate_ids(env)
    assert info.value.reason == reason
    validate_ids(Envelope(message_id="m1", conversation_id="c-1", user_id="u1001"))


def test_batches_are_grouped_by_conversation_keeping_each_conversations_order() -> None:
    from types import SimpleNamespace

    from services.reply.app import by_conversation

    events = [SimpleNamespace(key=k, n=n) for n, k in enumerate([b"a", b"b", b"a", b"c", b"b"])]
    groups = by_conversation(events)
    assert [[e.n for e in g] for g in groups] == [[0, 2], [1, 4], [3]]
