"""Transcripts in MongoDB ``conversations``: one document per answered turn, ``_id`` =
message_id, written once the reply is out (state ``sent``).

Together with ``reply_claims`` they are the reply stage's idempotency records, so a redelivered
message never produces a second outbound reply:

1. before sending, the turn is claimed: a ``reply_claims`` document with the reply section and
   the dialogue state after the turn (state ``claimed``);
2. after the producer's acknowledgement the transcript is inserted into ``conversations``;
3. on redelivery (same message_id): a transcript → skip; only a claim → the stage crashed
   between 1 and 2, so the stored reply is sent again (the chat backend may see it twice in that
   narrow window, which at-least-once allows; it never sees two *different* replies).

Both collections are only ever inserted into and read by ``_id``. This layout came from
FerretDB 1.24 scanning a whole collection for every update by ``_id`` (25-35 ms at 1,500
documents, measured with ``kefu_mongo_command_seconds``); the cause turned out to be its unused
``_id`` index, patched in the local stack since (deploy/local/ferretdb/patches/0001), after which
an update costs about what an insert does. Insert-only stays: it needs no conditional update,
which FerretDB does not make atomic (services/orders/repository.py).

Only masked text is stored (PII replaced at ingest); phone and e-mail entities keep their type,
not their value.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kefu.v1.events_pb2 import Envelope, ReplySection
from services.runtime.envelope import to_dict

COLLECTION = "conversations"
CLAIMS = "reply_claims"
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
    """The claim record of one turn (state ``claimed``); ``mark_sent`` turns it into the
    transcript."""
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
        self.claims = db[CLAIMS]

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("conversation_id", 1), ("turn", 1)])
        await self.collection.create_index([("user_id", 1), ("at", -1)])

    async def get(self, message_id: str) -> dict[str, Any] | None:
        """The turn's transcript (``sent``), else its claim (``claimed``), else None."""
        sent, claimed = await asyncio.gather(
            self.collection.find_one({"_id": message_id}),
            self.claims.find_one({"_id": message_id}),
        )
        doc: dict[str, Any] | None = sent if sent is not None else claimed
        return doc

    async def claim(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        """Insert the claim; when another attempt got there first, return its record."""
        try:
            await self.claims.insert_one(doc)
        except DuplicateKeyError:
            return await self.get(doc["_id"])
        return None

    async def mark_sent(self, claimed: dict[str, Any]) -> None:
        """Insert the transcript of a claimed turn whose reply the broker has acknowledged."""
        doc = {k: v for k, v in claimed.items() if k != "state_after"}
        doc.update(state=SENT, sent_at=dt.datetime.now(dt.UTC))
        with contextlib.suppress(DuplicateKeyError):  # recorded by an earlier attempt
            await self.collection.insert_one(doc)
