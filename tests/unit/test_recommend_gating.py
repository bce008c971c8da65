"""When recommendations are attached to a turn: exhaustive over the signals the rule reads."""

from __future__ import annotations

import itertools

import pytest

from kefu.v1.events_pb2 import Envelope
from services.recommend.catalog import Catalog, Product
from services.recommend.gating import (
    MIN_PRODUCT_MATCH,
    SKIP_REASONS,
    TurnSignals,
    asks_for_suggestions,
    context_product_ids,
    decide,
    names_a_budget_briefly,
    names_a_category_briefly,
    price_cap_cents,
    requested_categories,
    signals_from_envelope,
)

# The design's taxonomy, plus out_of_scope, the small-talk intents and "no intent".
TAXONOMY = [
    "cancel_order",
    "change_order",
    "change_shipping_address",
    "check_cancellation_fee",
    "check_invoice",
    "check_payment_methods",
    "check_refund_policy",
    "complaint",
    "contact_customer_service",
    "contact_human_agent",
    "create_account",
    "delete_account",
    "delivery_options",
    "delivery_period",
    "edit_account",
    "get_invoice",
    "get_refund",
    "newsletter_subscription",
    "payment_issue",
    "place_order",
    "recover_password",
    "registration_problems",
    "review",
    "set_up_shipping_address",
    "switch_account",
    "track_order",
    "track_refund",
]
ALL_INTENTS = (*TAXONOMY, "out_of_scope", "greeting", "thanks", "goodbye", "")
SENTIMENTS = ("negative", "neutral", "positive", "")

# Written out independently of the module's own sets, from the wording.
NEVER_INTENTS = {
    "complaint",
    "get_refund",
    "track_refund",
    "check_refund_policy",
    "cancel_order",
    "check_cancellation_fee",
    "contact_human_agent",
    "out_of_scope",
}
SHOPPING = {"place_order", "delivery_options", "check_payment_methods", "review"}


def test_taxonomy_is_complete() -> None:
    assert len(TAXONOMY) == 27


def _all_signals() -> list[TurnSignals]:
    return [
        TurnSignals(intent, conf, oos, entity, sentiment, escalate, handoff)
        for intent, conf, oos, entity, sentiment, escalate, handoff in itertools.product(
            ALL_INTENTS,
            (0.3, 0.9),
            (False, True),
            (False, True),
            SENTIMENTS,
            (False, True),
            (False, True),
        )
    ]


def _blocked(s: TurnSignals) -> bool:
    return (
        s.in_handoff
        or s.escalate
        or s.out_of_scope
        or s.sentiment == "negative"
        or s.intent in NEVER_INTENTS
    )


def test_never_during_trouble_exhaustive() -> None:
    signals = _all_signals()
    assert len(signals) == len(ALL_INTENTS) * 2 * 2 * 2 * 4 * 2 * 2
    attached = 0
    for s in signals:
        attach, reason = decide(s)
        if _blocked(s):
            assert not attach, s
            assert reason in SKIP_REASONS, (s, reason)
        elif s.has_product_entity:
            assert attach and reason == "", s
        else:
            expected = s.intent_confidence >= 0.5 and (
                s.intent in SHOPPING or (s.intent == "thanks" and s.sentiment == "positive")
            )
            assert attach == expected, s
            assert (reason == "") == attach, (s, reason)
        attached += attach
    # The rule is not trivially "never": plenty of shopping turns get suggestions.
    assert 0 < attached < len(signals)


@pytest.mark.parametrize(
    ("signals", "expected"),
    [
        (TurnSignals("place_order", sentiment="neutral"), (True, "")),
        (TurnSignals("delivery_options"), (True, "")),
        (TurnSignals("check_payment_methods", sentiment="positive"), (True, "")),
        (TurnSignals("review", sentiment="positive"), (True, "")),
        (TurnSignals("thanks", sentiment="positive"), (True, "")),
        (TurnSignals("thanks", sentiment="neutral"), (False, "not_shopping")),
        (TurnSignals("track_order", has_product_entity=True), (True, "")),
        (TurnSignals("track_order"), (False, "not_shopping")),
        (TurnSignals("place_order", intent_confidence=0.2), (False, "low_confidence")),
        (TurnSignals("", has_product_entity=False), (False, "no_intent")),
        (TurnSignals("complaint", sentiment="negative"), (False, "complaint")),
        (TurnSignals("get_refund", has_product_entity=True), (False, "refund")),
        (TurnSignals("track_refund"), (False, "refund")),
        (TurnSignals("check_refund_policy", sentiment="positive"), (False, "refund")),
        (TurnSignals("cancel_order", has_product_entity=True), (False, "cancellation")),
        (TurnSignals("check_cancellation_fee"), (False, "cancellation")),
        (TurnSignals("place_order", sentiment="negative"), (False, "negative_sentiment")),
        (TurnSignals("place_order", escalate=True), (False, "escalation")),
        (TurnSignals("place_order", out_of_scope=True), (False, "out_of_scope")),
        (TurnSignals("out_of_scope", has_product_entity=True), (False, "out_of_scope")),
        (TurnSignals("contact_human_agent"), (False, "handoff")),
        # The most serious reason is the one reported.
        (TurnSignals("complaint", sentiment="negative", in_handoff=True), (False, "handoff")),
        (TurnSignals("get_refund", escalate=True), (False, "escalation")),
    ],
)
def test_decisions(signals: TurnSignals, expected: tuple[bool, str]) -> None:
    assert decide(signals) == expected


def test_signals_from_envelope() -> None:
    env = Envelope()
    env.nlu.intent = "place_order"
    env.nlu.confidence = 0.8
    product = env.nlu.entities.add()
    product.type, product.value = "product", "P10001"
    fuzzy = env.nlu.entities.add()
    fuzzy.type, fuzzy.value = "product", "{'$gt': ''}"  # not an id: never used
    env.sentiment.label = "positive"
    s = signals_from_envelope(env)
    assert s.intent_confidence == pytest.approx(0.8)
    assert s == TurnSignals(
        "place_order", s.intent_confidence, False, True, "positive", False, False
    )
    assert decide(s) == (True, "")
    assert context_product_ids(env) == ["P10001"]
    env.sentiment.escalate = True
    assert decide(signals_from_envelope(env)) == (False, "escalation")
    assert decide(signals_from_envelope(Envelope(), in_handoff=True)) == (False, "handoff")


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("有什么好用的耳机推荐吗", True),
        ("帮我推荐一下", True),
        ("推薦一下", True),
        ("送什么礼物好", True),
        ("can you recommend a good phone case?", True),
        ("any suggestions?", True),
        ("what should i buy for my mom", True),
        # a product already suggested, a referral code, a complaint
        ("你们推荐的那个耳机坏了", False),
        ("推荐码怎么用", False),
        ("the recommended charger broke", False),
        ("I suggest you fix your app", False),
        ("where is my order", False),
    ],
)
def test_asks_for_suggestions(text: str, asks: bool) -> None:
    assert asks_for_suggestions(text) is asks


def test_asked_for_suggestions_they_come_unless_a_person_has_it_or_it_escalates() -> None:
    asked = TurnSignals("out_of_scope", 0.99, out_of_scope=True, requested=True)
    assert decide(asked) == (True, "")
    assert decide(TurnSignals("complaint", sentiment="negative", requested=True)) == (True, "")
    assert decide(TurnSignals("out_of_scope", requested=True, in_handoff=True)) == (
        False,
        "handoff",
    )
    assert decide(TurnSignals("out_of_scope", requested=True, escalate=True)) == (
        False,
        "escalation",
    )


def test_requested_categories_from_the_words_else_the_products_named() -> None:
    shop = Catalog(
        [
            Product(
                "P10001", "iPhone 手机壳", "iPhone case", "phone-cases", "手机壳", "Phone cases", 5
            ),
            Product("P10002", "降噪耳机", "ANC earbuds", "earphones", "耳机", "Earphones", 5),
        ]
    )
    env = Envelope(text="有什么好用的耳机推荐吗")
    assert requested_categories(env, shop) == ["earphones"]
    env = Envelope(text="anything like my iPhone thing?")
    env.nlu.entities.add(type="product", value="P10001", score=0.3)
    assert requested_categories(env, shop) == ["phone-cases"]
    # a weak match names a kind of product, not one seen: it is no context product then
    assert context_product_ids(env) == ["P10001"]
    assert context_product_ids(env, MIN_PRODUCT_MATCH) == []
    assert requested_categories(env, None) == []


@pytest.mark.parametrize(
    "text",
    ["any good books you'd suggest?", "Any good phone cases?", "what would you suggest for a gift"],
)
def test_more_ways_to_ask_for_suggestions(text: str) -> None:
    assert asks_for_suggestions(text)
    assert not asks_for_suggestions("is this charger any good?")


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("有没有一百块以内的耳机推荐", 10000),
        ("一百五十块以内", 15000),
        ("两千五百元以内的手机", 250000),
        ("200元以下的充电宝", 20000),
        ("recommend a case under 80 yuan", 8000),
        ("anything under ¥99.5?", 9950),
        # dollars are not the shop's currency; counts are no prices
        ("any earbuds under $50?", None),
        ("under 50 dollars", None),
        ("我的订单3件以内", None),
        ("有什么耳机推荐吗", None),
    ],
)
def test_price_cap(text: str, cents: int | None) -> None:
    assert price_cap_cents(text) == cents


@pytest.mark.parametrize("text", ["有什么推荐的吗", "想给女朋友买个礼物", "送什么礼物好"])
def test_chinese_requests_ending_in_de_or_about_gifts(text: str) -> None:
    assert asks_for_suggestions(text)


def test_a_short_message_naming_a_category_can_follow_suggestions() -> None:
    shop = Catalog(
        [Product("P10002", "降噪耳机", "ANC earbuds", "earphones", "耳机", "Earphones", 5)]
    )
    assert names_a_category_briefly("what about earphones?", shop)
    assert names_a_category_briefly("那耳机呢", shop)
    assert not names_a_category_briefly("那耳机呢", None)
    assert not names_a_category_briefly("where are the earphones of 7730192846", shop)
    assert not names_a_category_briefly("what about my order?", shop)
    assert names_a_category_briefly("what about headphones?", shop, product_named=True)
    long = "I bought earphones last month and they were great, but now I wonder about the case"
    assert not names_a_category_briefly(long, shop)


def test_a_budget_alone_is_a_brief_follow_up() -> None:
    assert names_a_budget_briefly("预算两百以内")
    assert names_a_budget_briefly("under 100 please")
    assert not names_a_budget_briefly("订单7730192846两百以内能退吗")
    assert not names_a_budget_briefly("便宜一点的")


def test_gift_ideas_are_a_request_for_suggestions() -> None:
    assert asks_for_suggestions("need a birthday gift for my dad, ideas?")
    assert not asks_for_suggestions("I got a gift for my friend, where is it")
