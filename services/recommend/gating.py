"""When recommendations belong in a turn, and when they would be tone-deaf.

Suggestions are attached only to shopping turns (asking about ordering, delivery options, payment
methods, reviews, or about a specific product) and to a happy ending (a positive "thank you").
They are never attached while the customer is unhappy or trying to undo a purchase: complaints,
refunds, cancellations, negative sentiment, escalation, out-of-scope messages, or a conversation
that is (or is asking to be) with a human agent. Blocking reasons win over attaching ones.

A customer who asks for suggestions ("有什么好用的耳机推荐吗", "can you recommend a phone case?")
gets them unless a person has the conversation or the turn escalates: the intent model has no
such intent and reads these as out of scope, and the words say plainly what is wanted. The
category and the price cap the message names ("一百块以内的耳机") narrow what is suggested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kefu.v1.events_pb2 import Envelope
from services.recommend.catalog import Catalog
from services.runtime.mongo import ORDER_ID_IN_TEXT_RE, PRODUCT_ID_RE
from services.runtime.numbers import zh_number

SHOPPING_INTENTS = frozenset({"place_order", "delivery_options", "check_payment_methods", "review"})
# A resolved, happy turn: "thanks, that's great" is a good moment for a gentle suggestion.
RESOLVED_INTENTS = frozenset({"thanks"})
COMPLAINT_INTENTS = frozenset({"complaint"})
REFUND_INTENTS = frozenset({"get_refund", "track_refund", "check_refund_policy"})
CANCELLATION_INTENTS = frozenset({"cancel_order", "check_cancellation_fee"})
HUMAN_INTENTS = frozenset({"contact_human_agent"})
# Below this NLU confidence an intent alone does not justify suggestions (product entities do).
MIN_INTENT_CONFIDENCE = 0.5

# Every skipped_reason this module returns (also the `outcome` label of the metric).
SKIP_REASONS = (
    "handoff",
    "escalation",
    "out_of_scope",
    "complaint",
    "refund",
    "cancellation",
    "negative_sentiment",
    "no_intent",
    "low_confidence",
    "not_shopping",
)


# Asking for suggestions. Not "你们推荐的那款" (a product already suggested), not a referral code
# ("推荐码", "推荐人"), not "the recommended charger".
ASKS_FOR_SUGGESTIONS = re.compile(
    r"推[荐薦](?:的(?=[吗呢嘛？?])|(?![的过過码碼人奖獎]))|(?:买|送|挑)(?:个|点|什么|啥)?(?:礼物|禮物)"
    r"|有(什么|什麼|啥|没有|沒有)好(用|看|吃|喝|玩|穿)的"
    r"|买(什么|啥)好|哪[款个個种種](比较|比較)?好|送(什么|啥)(礼物|禮物)?好|值得买"
    r"|\brecommend(?!ed\b)|\brecommendations?\b|\bsuggest(ions?)?\s+(a|an|some|me|any|for)\b"
    r"|\bany\s+suggestions?\b|\bwhat\s+should\s+i\s+(buy|get|order)\b"
    r"|\b(?:you'?d|you\s+would|you\s+could|can\s+you|could\s+you)\s+suggest\b|^\s*any\s+good\s+\w+"
    r"|\bwhich\s+(one|\w+)\s+should\s+i\s+(buy|get)\b|\bgift\s+ideas?\b"
    # "need a birthday gift for my dad, ideas?" was "I can't help with that one"
    r"|\b(?:gift|present)\b.{0,40}\b(?:ideas?|suggestions?)\b|\bbirthday (?:gift|present)\b"
    r"|\bwhat (?:should|could|can) i (?:get|buy|give)\b",
    re.IGNORECASE,
)


# "一百块以内的耳机", "200元以下", "under 100 yuan": a price cap in the shop's currency (CNY).
# Dollar amounts are left alone: the catalog has no prices in them.
_PRICE_CAP = re.compile(
    r"(?P<zh>\d+(?:\.\d+)?|[零一二两三四五六七八九十百千万]+)\s*(?:块钱?|元|rmb|¥)?\s*(?:以内|以下|之内)"
    r"|\b(?:under|below|less than|within|up to|no more than|max(?:imum)?)\s*(?:¥|rmb\s*|cny\s*)?"
    r"(?P<en>\d+(?:\.\d+)?)(?![\d.])(?!\s*(?:usd|dollars?|\$|%))",
    re.IGNORECASE,
)


def price_cap_cents(text: str) -> int | None:
    """The most the customer wants to pay, in cents, when the message says; else None."""
    m = _PRICE_CAP.search(text)
    if m is None:
        return None
    amount = zh_number(m.group("zh")) if m.group("zh") else float(m.group("en"))
    return round(amount * 100) if amount > 0 else None


# reply's answers that list suggestions (or ask which kind): a short message naming a category
# right after one asks for more ("what about headphones?", "那耳机呢")
SUGGESTION_TEMPLATES = frozenset({"suggestions", "no_suggestions"})
MAX_FOLLOW_UP_CHARS = 40


def names_a_category_briefly(
    text: str, catalog: Catalog | None, product_named: bool = False
) -> bool:
    """A short message that names a category of the catalog (or, ``product_named``, a kind of
    product nlu found: "headphones") and no order."""
    return (
        catalog is not None
        and len(text.strip()) <= MAX_FOLLOW_UP_CHARS
        and not ORDER_ID_IN_TEXT_RE.search(text)
        and (product_named or bool(catalog.categories_named(text)))
    )


def names_a_budget_briefly(text: str) -> bool:
    """A short message with a price cap and no order ("预算两百以内", "under 100 please")."""
    return (
        len(text.strip()) <= MAX_FOLLOW_UP_CHARS
        and not ORDER_ID_IN_TEXT_RE.search(text)
        and price_cap_cents(text) is not None
    )


def asks_for_suggestions(text: str) -> bool:
    """The customer asks what to buy: "有什么耳机推荐吗", "any good books you'd suggest?"."""
    return bool(ASKS_FOR_SUGGESTIONS.search(text))


@dataclass(frozen=True)
class TurnSignals:
    """What the earlier stages found out about this turn."""

    intent: str
    intent_confidence: float = 1.0
    out_of_scope: bool = False
    has_product_entity: bool = False
    sentiment: str = ""  # negative | neutral | positive ("" when sentiment did not run)
    escalate: bool = False
    in_handoff: bool = False  # the conversation is currently with a human agent
    requested: bool = False  # the customer asked for suggestions (asks_for_suggestions)


def decide(signals: TurnSignals) -> tuple[bool, str]:
    """(attach, skipped_reason); skipped_reason is "" when attaching."""
    s = signals
    if s.in_handoff or s.intent in HUMAN_INTENTS:
        return False, "handoff"
    if s.escalate:
        return False, "escalation"
    if s.requested:
        return True, ""
    if s.out_of_scope or s.intent == "out_of_scope":
        return False, "out_of_scope"
    if s.intent in COMPLAINT_INTENTS:
        return False, "complaint"
    if s.intent in REFUND_INTENTS:
        return False, "refund"
    if s.intent in CANCELLATION_INTENTS:
        return False, "cancellation"
    if s.sentiment == "negative":
        return False, "negative_sentiment"
    if s.has_product_entity:
        return True, ""
    if not s.intent:
        return False, "no_intent"
    attaching = s.intent in SHOPPING_INTENTS or (
        s.intent in RESOLVED_INTENTS and s.sentiment == "positive"
    )
    if not attaching:
        return False, "not_shopping"
    if s.intent_confidence < MIN_INTENT_CONFIDENCE:
        return False, "low_confidence"
    return True, ""


def signals_from_envelope(env: Envelope, in_handoff: bool = False) -> TurnSignals:
    """The gating inputs from an envelope that has been through nlu and sentiment."""
    return TurnSignals(
        intent=env.nlu.intent,
        intent_confidence=env.nlu.confidence,
        out_of_scope=env.nlu.out_of_scope,
        has_product_entity=any(e.type == "product" for e in env.nlu.entities),
        sentiment=env.sentiment.label,
        escalate=env.sentiment.escalate,
        in_handoff=in_handoff,
        requested=asks_for_suggestions(env.text),
    )


# A product entity matched by less than this share of its name is a kind of product ("耳机",
# "a phone case"), not that product: asking for suggestions, it names a category only.
MIN_PRODUCT_MATCH = 0.5


def context_product_ids(env: Envelope, min_score: float = 0.0) -> list[str]:
    """Product ids the customer mentions in this turn (normalised entity values), in order.

    Values that are not product ids (a fuzzy match that found none) are left out, and so are
    matches scored below ``min_score``.
    """
    out: list[str] = []
    for e in env.nlu.entities:
        if (
            e.type == "product"
            and PRODUCT_ID_RE.match(e.value)
            and e.score >= min_score
            and e.value not in out
        ):
            out.append(e.value)
    return out


def requested_categories(env: Envelope, catalog: Catalog | None) -> list[str]:
    """The categories a request for suggestions is about: named in the message ("耳机",
    "phone case"), else those of the products it mentions; none: any category."""
    if catalog is None:
        return []
    named = catalog.categories_named(env.text)
    if named:
        return named
    out: list[str] = []
    for pid in context_product_ids(env):
        product = catalog.get(pid)
        if product is not None and product.category and product.category not in out:
            out.append(product.category)
    return out
