"""Behaviour in: kefu.behavior.v1 events (views, carts, purchases) → the `interactions` collection.

Every event is validated before it touches MongoDB; an invalid one raises ``BehaviorError`` whose
``reason`` is the DLQ's machine-readable code and whose ``detail`` says what to fix. Storing is
idempotent: the document's ``_id`` is the event id, so a redelivered event is stored once.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kefu.v1.events_pb2 import BehaviorEvent
from services.recommend.model import KINDS
from services.runtime.envelope import EnvelopeError, decode
from services.runtime.mongo import PRODUCT_ID_RE, USER_ID_RE

COLLECTION = "interactions"
EVENT_ID_RE = re.compile(r"^[A-Za-z0-9_\-:.]{1,128}$")
MAX_QUANTITY = 10_000
# Platform clocks drift; an event more than this far in the future is a bug, not skew.
MAX_CLOCK_SKEW_S = 24 * 3600
EARLIEST_AT = datetime(2000, 1, 1, tzinfo=UTC).timestamp()

# (name, keys): the recent history of a customer, and "who touched this product" for training.
INTERACTION_INDEXES: tuple[tuple[str, list[tuple[str, int]]], ...] = (
    ("user_id_at", [("user_id", ASCENDING), ("at", DESCENDING)]),
    ("product_id", [("product_id", ASCENDING)]),
)


class BehaviorError(EnvelopeError):
    """An invalid behaviour event: ``reason`` for the DLQ, ``detail`` for people."""


def parse_behavior(raw: bytes | str | None, now: float | None = None) -> dict[str, Any]:
    """proto3 JSON of kefu.v1.BehaviorEvent → the `interactions` document to store.

    Raises BehaviorError (reasons: the envelope codec's payload ones, missing_field,
    invalid_event_id, invalid_user_id, invalid_product_id, invalid_kind, invalid_quantity,
    invalid_timestamp).
    """
    try:
        event = decode(raw, BehaviorEvent())
    except BehaviorError:
        raise
    except EnvelopeError as exc:
        raise BehaviorError(exc.reason, exc.detail) from None
    assert isinstance(event, BehaviorEvent)
    return document_from_event(event, now)


def document_from_event(event: BehaviorEvent, now: float | None = None) -> dict[str, Any]:
    missing = [f for f in ("event_id", "user_id", "product_id", "kind") if not getattr(event, f)]
    if not event.HasField("at"):
        missing.append("at")
    if missing:
        raise BehaviorError(
            "missing_field", f"behaviour event needs {', '.join(missing)} (kefu.v1.BehaviorEvent)"
        )
    if not EVENT_ID_RE.match(event.event_id):
        raise BehaviorError(
            "invalid_event_id", "event_id must be 1-128 letters, digits or _-:. characters"
        )
    if not USER_ID_RE.match(event.user_id):
        raise BehaviorError(
            "invalid_user_id", f"user_id must match {USER_ID_RE.pattern} (1-64 letters, digits, _-)"
        )
    if not PRODUCT_ID_RE.match(event.product_id):
        raise BehaviorError(
            "invalid_product_id",
            f"product_id {event.product_id[:40]!r} must match {PRODUCT_ID_RE.pattern}, e.g. P10001",
        )
    if event.kind not in KINDS:
        raise BehaviorError(
            "invalid_kind", f"kind {event.kind[:40]!r} must be one of {', '.join(KINDS)}"
        )
    # proto3 has no "unset" for ints: 0 means the platform did not send a quantity.
    quantity = event.quantity or 1
    if not 1 <= quantity <= MAX_QUANTITY:
        raise BehaviorError(
            "invalid_quantity", f"quantity {event.quantity} must be between 1 and {MAX_QUANTITY}"
        )
    at = event.at.seconds + event.at.nanos / 1e9
    limit = (time.time() if now is None else now) + MAX_CLOCK_SKEW_S
    if not EARLIEST_AT <= at <= limit:
        raise BehaviorError(
            "invalid_timestamp",
            f"at {event.at.ToJsonString()} is before 2000 or more than a day in the future: "
            "send the time the customer acted, in UTC",
        )
    return {
        "_id": event.event_id,
        "user_id": event.user_id,
        "product_id": event.product_id,
        "kind": event.kind,
        "quantity": quantity,
        "at": datetime.fromtimestamp(at, tz=UTC),
    }


def ensure_interaction_indexes(db: Database) -> None:
    for name, keys in INTERACTION_INDEXES:
        db[COLLECTION].create_index(keys, name=name)


async def ensure_interaction_indexes_async(db: AsyncDatabase) -> None:
    for name, keys in INTERACTION_INDEXES:
        await db[COLLECTION].create_index(keys, name=name)


def save_interaction(db: Database, doc: dict[str, Any]) -> bool:
    """Store one validated document; False when this event id was already stored."""
    try:
        db[COLLECTION].insert_one(doc)
    except DuplicateKeyError:
        return False
    return True


async def save_interaction_async(db: AsyncDatabase, doc: dict[str, Any]) -> bool:
    """Store one validated document; False when this event id was already stored."""
    try:
        await db[COLLECTION].insert_one(doc)
    except DuplicateKeyError:
        return False
    return True
