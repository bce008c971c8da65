"""Behaviour events → `interactions` documents, and the DLQ reasons of bad ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from services.recommend.behavior import INTERACTION_INDEXES, BehaviorError, parse_behavior
from services.runtime.envelope import EnvelopeError

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp()


def _event(**overrides: Any) -> dict[str, Any]:
    event = {
        "eventId": "evt-1",
        "userId": "u_42",
        "productId": "P10001",
        "kind": "cart",
        "quantity": 2,
        "at": "2026-11-20T10:30:00Z",
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def test_valid_event_becomes_idempotent_document() -> None:
    doc = parse_behavior(json.dumps(_event()).encode(), now=NOW)
    assert doc == {
        "_id": "evt-1",
        "user_id": "u_42",
        "product_id": "P10001",
        "kind": "cart",
        "quantity": 2,
        "at": datetime(2026, 11, 20, 10, 30, tzinfo=UTC),
    }


def test_proto_field_names_and_unknown_fields_are_accepted() -> None:
    raw = json.dumps(
        {
            "event_id": "e2",
            "user_id": "u1",
            "product_id": "P20000",
            "kind": "view",
            "at": "2026-11-20T10:30:00.250Z",
            "platform_extra": 1,
        }
    )
    doc = parse_behavior(raw, now=NOW)
    assert doc["quantity"] == 1  # proto3 default 0 = not sent
    assert doc["at"].microsecond == 250_000


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "invalid_utf8"),
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (b"", "empty_payload"),
        (json.dumps(_event(eventId=None)), "missing_field"),
        (json.dumps(_event(at=None)), "missing_field"),
        (json.dumps(_event(kind=None)), "missing_field"),
        (json.dumps(_event(eventId="a b")), "invalid_event_id"),
        (json.dumps(_event(userId="u 1")), "invalid_user_id"),
        (json.dumps(_event(userId={"$ne": ""})), "invalid_field"),
        (json.dumps(_event(productId="10001")), "invalid_product_id"),
        (json.dumps(_event(productId="P1000")), "invalid_product_id"),
        (json.dumps(_event(kind="wishlist")), "invalid_kind"),
        (json.dumps(_event(quantity=-1)), "invalid_quantity"),
        (json.dumps(_event(quantity=10_001)), "invalid_quantity"),
        (json.dumps(_event(quantity="many")), "invalid_field"),
        (json.dumps(_event(at="yesterday")), "invalid_field"),
        (json.dumps(_event(at="1999-12-31T23:59:59Z")), "invalid_timestamp"),
        (json.dumps(_event(at="2026-11-22T12:00:01Z")), "invalid_timestamp"),
    ],
)
def test_bad_events_say_why(raw: bytes | str, reason: str) -> None:
    with pytest.raises(BehaviorError) as info:
        parse_behavior(raw, now=NOW)
    assert info.value.reason == reason
    assert info.value.detail  # a human-readable explanation for the DLQ
    # The stage's generic DLQ handling catches EnvelopeError.
    assert isinstance(info.value, EnvelopeError)


def test_clock_skew_within_a_day_is_accepted() -> None:
    doc = parse_behavior(json.dumps(_event(at="2026-11-21T11:00:00Z")), now=NOW)
    assert doc["at"] > datetime.fromtimestamp(NOW, tz=UTC)


def test_indexes_cover_history_and_training_queries() -> None:
    keys = {name: keys for name, keys in INTERACTION_INDEXES}
    assert keys["user_id_at"] == [("user_id", 1), ("at", -1)]
    assert keys["product_id"] == [("product_id", 1)]
