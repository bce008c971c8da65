"""When recommendations belong in a turn, and when they would be tone-deaf.

Suggestions are attached only to shopping turns (asking about ordering, delivery options, payment
methods, reviews, or about a specific product) and to a happy ending (a positive "thank you").
They are never attached while the customer is unhappy or trying to undo a purchase: complaints,
refunds, cancellations, negative sentiment, escalation, out-of-scope messages, or a conversation
that is (or is asking to be) with a human agent. Blocking reasons win over attaching ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from kefu.v1.events_pb2 import Envelope
from services.runtime.mongo import PRODUCT_ID_RE

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


def decide(signals: TurnSignals) -> tuple[bool, str]:
    """(attach, skipped_reason); skipped_reason is "" when attaching."""
    s = signals
    if s.in_handoff or s.intent in HUMAN_INTENTS:
        return False, "handoff"
    if s.escalate:
        return False, "escalation"
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
    )


def context_product_ids(env: Envelope) -> list[str]:
    """Product ids the customer mentions in this turn (normalised entity values), in order.

    Values that are not product ids (a fuzzy match that found none) are left out.
    """
    out: list[str] = []
    for e in env.nlu.entities:
        if e.type == "product" and PRODUCT_ID_RE.match(e.value) and e.value not in out:
            out.append(e.value)
    return out
