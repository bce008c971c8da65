"""Transcripts in MongoDB ``conversations``: one document per turn, ``_id`` = message_id.

The same document is the reply stage's idempotency record, so a redelivered message never
produces a second outbound reply:

1. before sending, the turn is written with state ``claimed`` together with the reply section
   and the dialogue state after the turn;
2. after the producer's acknowledgement it is marked ``sent``;
3. on redelivery (same message_id): ``sent`` → skip; ``claimed`` → the stage crashed between 1
   and 2, so the stored reply is sent again (the chat backend may see it twice in that narrow
   window, which at-least-once allows; it never sees two *different* replies).

Only masked text is stored (PII replaced at ingest); phone and e-mail entities keep their type,
not their value.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kefu.v1.events_pb2 import Envelope, ReplySection
from services.runtime.envelope import to_dict

COLLECTION = "conversations"
CLAIMED = "claimed"
SENT = "sent"
_PII_ENTITY_TYPES = frozenset({"phone", "email", "bank_card"})


def turn_doc(
    env: Envelope,
    reply: ReplySection,
    latency_ms: float,
    state_after: dict[str, Any],
    handoff_event: bool,
) -> dict[str, Any]:
    """The transcript record of one turn (state ``claimed``)."""
    entities = [
        {"type": e.type, "value": f"[{e.type.upper()}]" if e.type in _PII_ENTITY_TYPES else e.value}
        for e in env.nlu.entities
    ]
    return {
        "_id": env.message_id,
        "conversation_id": env.conversation_id,
        "user_id": env.user_id,
        "turn": reply.turn,
        "language": env.language,
        "text": env.masked_text or "",
        "intent": env.nlu.intent,
        "confidence": round(float(env.nlu.confidence), 4),
        "entities": entities,
        "sentiment": env.sentiment.label,
        "action": reply.action,
        "reply": to_dict(reply),
        "handoff_event": handoff_event,
        "latency_ms": round(latency_ms, 3),
        "at": dt.datetime.now(dt.UTC),
        "state": CLAIMED,
        "state_after": state_after,
    }


class TranscriptStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.collection = db[COLLECTION]

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("conversation_id", 1), ("turn", 1)])
        await self.collection.create_index([("user_id", 1), ("at", -1)])

    async def get(self, message_id: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await self.collection.find_one({"_id": message_id})
        return doc

    async def claim(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        """Insert the claimed turn; when another attempt got there first, return its record."""
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            return await self.get(doc["_id"])
        return None

    async def mark_sent(self, message_id: str) -> None:
        await self.collection.update_one(
            {"_id": message_id},
            {
                "$set": {"state": SENT, "sent_at": dt.datetime.now(dt.UTC)},
                "$unset": {"state_after": ""},
            },
        )
