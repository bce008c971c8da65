"""Greetings in front of a request are cut off and the rest read again (pure logic)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.models.openings import reread_openings, without_opening


@pytest.mark.parametrize(
    ("text", "rest"),
    [
        ("你好，在吗？我想问下订单7730192846到哪了", "我想问下订单7730192846到哪了"),
        ("亲在吗我的快递到哪了", "我的快递到哪了"),
        ("客服您好～ 发票怎么开", "发票怎么开"),
        ("hi, hope you're well. I'd like to cancel my order", "I'd like to cancel my order"),
        ("Hello? Anyone there? I need an invoice", "I need an invoice"),
        ("good morning! where is my parcel", "where is my parcel"),
        # nothing but greetings, no greeting, or a word that only starts like one
        ("你好，在吗", ""),
        ("hello hello", ""),
        ("where is my order", ""),
        ("history of my orders", ""),
        ("亲子装有货吗", ""),
    ],
)
def test_without_opening(text: str, rest: str) -> None:
    assert without_opening(text) == rest


@dataclass
class Reading:
    intent: str
    confidence: float
    out_of_scope: bool = False


def test_only_small_talk_readings_are_replaced_and_only_by_confident_requests() -> None:
    texts = [
        "你好，在吗？订单到哪了",
        "你好，在吗？今天天气",
        "hi, where is my order",
        "你好，谢谢亲",
    ]
    first = [
        Reading("greeting", 0.53),
        Reading("greeting", 0.6),
        Reading("track_order", 0.9),  # already a request: not read again
        Reading("greeting", 0.7),
    ]
    asked: list[list[str]] = []

    def predict(rest: list[str]) -> list[Reading]:
        asked.append(rest)
        answers = {
            "订单到哪了": Reading("track_order", 0.97),
            "今天天气": Reading("out_of_scope", 0.9, out_of_scope=True),
            "谢谢亲": Reading("thanks", 0.9),
        }
        return [answers[r] for r in rest]

    out = reread_openings(texts, first, predict)
    assert asked == [["订单到哪了", "今天天气", "谢谢亲"]]  # one more pass, for those only
    assert [r.intent for r in out] == ["track_order", "greeting", "track_order", "greeting"]
    unsure = reread_openings(texts[:1], first[:1], lambda rest: [Reading("track_order", 0.4)])
    assert unsure[0].intent == "greeting"


def test_an_unsure_reading_is_replaced_only_by_a_surer_request() -> None:
    texts = ["hello! I'd like to return an item please", "hi, umm the thing", "hi there"]
    first = [Reading("get_refund", 0.41), Reading("track_order", 0.45), Reading("greeting", 0.99)]
    answers = {
        "I'd like to return an item please": Reading("get_refund", 0.95),
        "umm the thing": Reading("track_order", 0.40),
    }
    out = reread_openings(texts, first, lambda rest: [answers[r] for r in rest])
    assert [(r.intent, r.confidence) for r in out] == [
        ("get_refund", 0.95),
        ("track_order", 0.45),  # the rest read no surer: the first reading stays
        ("greeting", 0.99),  # nothing after the greeting: not read again
    ]
