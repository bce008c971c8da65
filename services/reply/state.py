"""Dialogue state per conversation, kept in MongoDB ``dialogue_state`` (``_id`` = conversation_id).

Why MongoDB and not a Faust table:
- it survives restarts and rebalances without a changelog topic to replay or a RocksDB to
  rebuild, so a new reply pod answers the next turn at once;
- human agents and the agent desk can read it (pending request, handoff status) with any
  MongoDB tool, and the control agent can release a handoff with one update;
- the cost is one read and one write per turn (about a millisecond each on the local stack),
  small against the 100 ms budget. Turns of one conversation arrive in order on one partition,
  so there is a single writer per conversation at a time.

The handoff fields are written only by a handoff turn (``save(..., handoff=True)``) and by
``release_handoff`` (targeted ``$set``), never by another turn's ``save``, so a release from the
agent desk is not overwritten by a turn that was being processed at the same moment.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.reply.templates import LANGUAGES

COLLECTION = "dialogue_state"
# Each customer's latest conversation language, by user_id: a new conversation starts in it.
# A lookup by _id, since a query on dialogue_state by user_id sorted by time took 125 ms on
# FerretDB with 626 conversations (measured), and grows with them.
USER_LANGUAGE_COLLECTION = "user_language"
# How many past turns the state remembers for the handoff summary and sentiment trend.
HISTORY_TURNS = 6


@dataclass
class OrderChoice:
    """One order offered to the customer when asking which order they mean."""

    order_id: str
    status: str = ""
    names_en: list[str] = field(default_factory=list)
    names_zh: list[str] = field(default_factory=list)
    product_ids: list[str] = field(default_factory=list)
    label: str = ""
    # the label in the other language too: after "can you reply in English?" the list is
    # offered again in English (it kept its Chinese names and states)
    labels: dict[str, str] = field(default_factory=dict)

    def label_in(self, language: str) -> str:
        return self.labels.get(language) or self.label


@dataclass
class Pending:
    """An order request in progress: which intent, and what the bot is waiting for.

    awaiting: order_choice | confirm | address | return_items | return_reason | retry
    """

    intent: str
    awaiting: str
    order_id: str = ""
    choices: list[OrderChoice] = field(default_factory=list)
    address: dict[str, str] = field(default_factory=dict)
    items: list[OrderChoice] = field(default_factory=list)  # order lines offered for a return
    product_ids: list[str] = field(default_factory=list)  # lines chosen for a return
    reason: str = ""
    # an address change asked for the recipient's phone or name ("改一下收货人电话"): a new phone
    # alone is the answer, the rest of the current address (``current``) is kept; a phone the
    # request itself gave ("收货人电话改成139…") waits in ``contact_given`` for the order choice
    contact: bool = False
    current: dict[str, str] = field(default_factory=dict)
    contact_given: dict[str, str] = field(default_factory=dict)


@dataclass
class NextRequest:
    """A change the customer asked for in the same message as the pending one ("cancel A and
    return B"): served once the pending request is settled."""

    intent: str
    order_id: str


@dataclass
class Handoff:
    active: bool = False
    reason: str = ""
    priority: str = ""
    since_turn: int = 0
    at: str = ""
    released_at: str = ""
    agent_id: str = ""


@dataclass
class PastTurn:
    turn: int
    text: str  # masked
    intent: str
    action: str
    sentiment: str


@dataclass
class DialogueState:
    conversation_id: str
    user_id: str = ""
    language: str = ""
    turn: int = 0
    last_intent: str = ""
    last_order_id: str = ""
    last_order_turn: int = 0  # the turn that last looked last_order_id up
    # the customer's orders the last order request offered or matched, so "no, the huawei one"
    # can correct the bot's pick in the next turns
    offered: list[OrderChoice] = field(default_factory=list)
    offered_intent: str = ""
    # the intents the last turn's clarify offered, so "第一个" / "the 2nd" can pick one
    clarify_intents: list[str] = field(default_factory=list)
    pending: Pending | None = None
    # an order choice a question interrupted ("which order?" → "do you ship to Canada?"): the
    # question is answered, and a pick in the next turns ("ok, the pending one") still counts
    paused: Pending | None = None
    paused_turn: int = 0
    next_requests: list[NextRequest] = field(default_factory=list)
    low_confidence_streak: int = 0
    negative_streak: int = 0
    negative_scores: list[float] = field(default_factory=list)  # last turns, oldest first
    order_failures: int = 0  # consecutive turns whose order RPC failed
    handoff: Handoff = field(default_factory=Handoff)
    # template id -> last variant used (ids never contain "." so they are valid MongoDB keys)
    rotation: dict[str, int] = field(default_factory=dict)
    last_template_id: str = ""
    last_reply_text: str = ""
    history: list[PastTurn] = field(default_factory=list)
    # the products the last suggestions listed (name and price), so "第一个多少钱" can be answered
    suggested: list[str] = field(default_factory=list)
    # the language when loaded (not stored): save records the customer's language on a change
    loaded_language: str = field(default="", repr=False, compare=False)

    def remember(self, past: PastTurn) -> None:
        self.history.append(past)
        del self.history[:-HISTORY_TURNS]

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["_id"] = doc.pop("conversation_id")
        doc.pop("loaded_language")
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> DialogueState:
        pending = doc.get("pending")
        return cls(
            conversation_id=str(doc["_id"]),
            user_id=doc.get("user_id", ""),
            language=doc.get("language", ""),
            turn=int(doc.get("turn", 0)),
            last_intent=doc.get("last_intent", ""),
            last_order_id=doc.get("last_order_id", ""),
            last_order_turn=int(doc.get("last_order_turn", 0)),
            offered=[_choice(c) for c in doc.get("offered", [])],
            offered_intent=doc.get("offered_intent", ""),
            clarify_intents=[str(x) for x in doc.get("clarify_intents", [])],
            pending=_pending_from(pending) if pending else None,
            paused=_pending_from(doc["paused"]) if doc.get("paused") else None,
            paused_turn=int(doc.get("paused_turn", 0)),
            next_requests=[
                NextRequest(**_known(NextRequest, r)) for r in doc.get("next_requests", [])
            ],
            low_confidence_streak=int(doc.get("low_confidence_streak", 0)),
            negative_streak=int(doc.get("negative_streak", 0)),
            negative_scores=[float(x) for x in doc.get("negative_scores", [])],
            order_failures=int(doc.get("order_failures", 0)),
            handoff=Handoff(**_known(Handoff, doc.get("handoff") or {})),
            rotation={str(k): int(v) for k, v in (doc.get("rotation") or {}).items()},
            last_template_id=doc.get("last_template_id", ""),
            suggested=[str(x) for x in doc.get("suggested", [])],
            last_reply_text=doc.get("last_reply_text", ""),
            history=[PastTurn(**_known(PastTurn, h)) for h in doc.get("history", [])],
            loaded_language=doc.get("language", ""),
        )

    def slots(self) -> dict[str, str]:
        """The slots shown in ReplySection.slots: what the bot remembers after this turn."""
        out: dict[str, str] = {"turn": str(self.turn)}
        if self.pending is not None:
            out["pending_intent"] = self.pending.intent
            out["awaiting"] = self.pending.awaiting
            if self.pending.order_id:
                out["order_id"] = self.pending.order_id
            if self.pending.choices:
                out["choices"] = ",".join(c.order_id for c in self.pending.choices)
        elif self.last_order_id:
            out["order_id"] = self.last_order_id
        if self.next_requests:
            out["next_requests"] = ",".join(f"{r.intent}:{r.order_id}" for r in self.next_requests)
        if self.low_confidence_streak:
            out["low_confidence_streak"] = str(self.low_confidence_streak)
        if self.negative_streak:
            out["negative_streak"] = str(self.negative_streak)
        if self.order_failures:
            out["order_failures"] = str(self.order_failures)
        if self.handoff.active:
            out["handoff"] = self.handoff.reason or "active"
        return out


def _known(kind: type, data: dict[str, Any]) -> dict[str, Any]:
    names = kind.__dataclass_fields__  # type: ignore[attr-defined]
    return {k: v for k, v in data.items() if k in names}


def _choice(data: dict[str, Any]) -> OrderChoice:
    return OrderChoice(**_known(OrderChoice, data))


def _pending_from(data: dict[str, Any]) -> Pending:
    values = _known(Pending, data)
    values["choices"] = [_choice(c) for c in values.get("choices", [])]
    values["items"] = [_choice(c) for c in values.get("items", [])]
    return Pending(**values)


class StateStore:
    """Async access to ``dialogue_state``."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.collection = db[COLLECTION]
        self.user_languages = db[USER_LANGUAGE_COLLECTION]

    async def ensure_indexes(self) -> None:
        # agents list the conversations waiting for them
        await self.collection.create_index([("handoff.active", 1), ("handoff.at", 1)])

    async def load(self, conversation_id: str, user_id: str) -> DialogueState:
        """The conversation's state; a new one starts in the customer's last language, so
        "👍" or an order id alone as the first message is answered in it (reply keeps the
        conversation's language when a message does not surely show one)."""
        doc = await self.collection.find_one({"_id": conversation_id})
        if doc is not None:
            return DialogueState.from_doc(doc)
        state = DialogueState(conversation_id=conversation_id, user_id=user_id)
        if user_id:
            last = await self.user_languages.find_one({"_id": user_id})
            if last is not None and last.get("language") in LANGUAGES:
                state.language = state.loaded_language = str(last["language"])
        return state

    async def save(self, state: DialogueState, *, handoff: bool = False) -> None:
        """Write everything but the handoff fields (see the module docstring); a handoff turn
        (``handoff=True``) writes its new handoff in the same update."""
        doc = state.to_doc()
        doc.pop("_id")
        if not handoff:
            doc.pop("handoff")
        now = dt.datetime.now(dt.UTC)
        doc["updated_at"] = now
        await self.collection.update_one({"_id": state.conversation_id}, {"$set": doc}, upsert=True)
        if state.user_id and state.language and state.language != state.loaded_language:
            await self.remember_language(state.user_id, state.language, now)
            state.loaded_language = state.language

    async def remember_language(self, user_id: str, language: str, at: dt.datetime) -> None:
        """Upsert the customer's language. Two conversations of one customer on two reply
        consumers can both insert it at once: the loser's duplicate-key error means the
        document exists now, so it is updated instead (seen in the kill -9 test on FerretDB)."""
        change = {"$set": {"language": language, "at": at}}
        try:
            await self.user_languages.update_one({"_id": user_id}, change, upsert=True)
        except DuplicateKeyError:
            await self.user_languages.update_one({"_id": user_id}, change)

    async def release_handoff(self, conversation_id: str, agent_id: str) -> bool:
        """The agent hands the conversation back; True when a handoff was active."""
        result = await self.collection.update_one(
            {"_id": conversation_id, "handoff.active": True},
            {
                "$set": {
                    "handoff.active": False,
                    "handoff.released_at": dt.datetime.now(dt.UTC).isoformat(),
                    "handoff.agent_id": agent_id,
                    # the bot starts afresh: nothing pending from before the handoff
                    "pending": None,
                    "low_confidence_streak": 0,
                    "negative_streak": 0,
                    "order_failures": 0,
                }
            },
        )
        return result.modified_count > 0
