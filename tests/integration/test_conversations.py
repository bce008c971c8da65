"""Conversations replayed through the REAL stack (Kafka, FerretDB, OrderService, every stage).

The scripted conversations are data (tests/conversations/*.yaml); this module replays each one
with the same engine as `kefu demo` and checks every turn's action, slots, language and text.
Around them: the authorisation rule, silence during a handoff, the reply stage's idempotency,
transcripts, the FAQ seed and an OrderService outage.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaProducer

from kefu import localstack
from kefu import stack as stacklib
from kefu.commands.conversation import (
    DEMO_FILE,
    Reply,
    Resolver,
    Script,
    Session,
    Step,
    TurnResult,
    load_scripts,
    replay,
)
from kefu.v1.events_pb2 import Envelope
from services.reply.faq import load_faq_files, seed_faq
from services.runtime.envelope import encode
from services.runtime.settings import TOPIC_ENRICHED
from tests.integration.conftest import StackHandle

CONVERSATIONS = Path(__file__).resolve().parents[1] / "conversations"
SCRIPTS: list[Script] = [s for p in sorted(CONVERSATIONS.glob("*.yaml")) for s in load_scripts(p)]
T = TypeVar("T")


def run_with_session(stack: StackHandle, work: Callable[[Session], Awaitable[T]]) -> T:
    async def go() -> T:
        session = Session(stack.settings)
        await session.start()
        try:
            return await work(session)
        finally:
            await session.stop()

    return asyncio.run(go())


def play(stack: StackHandle, scripts: list[Script], outage: Any = None) -> list[TurnResult]:
    db = stack.db()
    return run_with_session(stack, lambda s: replay(s, db, scripts, outage=outage, timeout=60.0))


def failures(results: list[TurnResult]) -> str:
    return "\n".join(
        f"{r.script.id} turn {r.step.text!r}: {'; '.join(r.problems)} -> "
        f"{json.dumps(r.reply.section, ensure_ascii=False)[:400]}"
        for r in results
        if not r.ok
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.id for s in SCRIPTS])
def test_scripted_conversation(stack: StackHandle, script: Script) -> None:
    results = play(stack, [script])
    assert len(results) == sum(1 for s in script.steps if s.kind == "say")
    assert all(r.ok for r in results), failures(results)


def test_the_demo_conversations_are_valid_scripts() -> None:
    scripts = load_scripts(DEMO_FILE)
    users = {s.user for s in scripts}
    assert {"u1001", "u2001"} <= users and {s.language for s in scripts} == {"zh", "en"}
    kinds = {st.kind for s in scripts for st in s.steps}
    assert kinds == {"say", "control", "outage"}
    actions = {a for s in scripts for st in s.steps for a in st.expect}
    assert {"answer", "faq", "ask", "order", "handoff", "forward"} <= actions


# -- authorisation ----------------------------------------------------------------------------------
def test_another_users_order_id_gets_the_same_answer_as_a_nonexistent_one(
    stack: StackHandle,
) -> None:
    resolver = Resolver(stack.db())
    foreign = resolver.order_id("u2001", "other_user")
    missing = resolver.order_id("u2001", "missing")
    scripts = [
        Script(
            f"auth-{n}", "u2001", "en", "auth", [Step("say", f"Where is order {oid}?", ("order",))]
        )
        for n, oid in enumerate((foreign, missing))
    ]
    results = play(stack, scripts)
    assert all(r.ok for r in results), failures(results)
    texts = [r.reply.section["text"] for r in results]
    calls = [r.reply.section["orderCall"] for r in results]
    assert calls[0]["code"] == calls[1]["code"] == "NOT_FOUND"
    assert texts[0].replace(foreign, "#") == texts[1].replace(missing, "#")


# -- the language of a new conversation ------------------------------------------------------------
def test_a_new_conversation_without_words_starts_in_the_customers_last_language(
    stack: StackHandle,
) -> None:
    # "👍👍" or an order id alone shows no language: a Chinese customer's new conversation that
    # opened with one was answered in English
    scripts = [
        Script(f"lang-{user}-{n}", user, lang, "language", [Step("say", text, ("answer",))])
        for user, lang, first in (("u1001", "zh", "你好"), ("u2001", "en", "hello"))
        for n, text in enumerate((first, "👍👍"))
    ]
    results = play(stack, scripts)
    assert len(results) == 4 and all(r.ok for r in results), failures(results)


def test_first_conversations_of_one_customer_at_once_record_the_language(
    stack: StackHandle,
) -> None:
    # two reply consumers upserting the same new customer raced into a duplicate-key error, which
    # dead-lettered a valid message in the kill -9 test
    from services.reply.state import DialogueState, StateStore
    from services.runtime.mongo import async_db

    user = f"u-lang-{uuid.uuid4().hex[:8]}"

    async def go() -> DialogueState:
        db = async_db(stack.settings)
        try:
            store = StateStore(db)
            states = [DialogueState(f"{user}-c{n}", user_id=user, language="zh") for n in range(8)]
            await asyncio.gather(*(store.save(s) for s in states))
            return await store.load(f"{user}-new", user)
        finally:
            await db.client.close()

    assert asyncio.run(go()).language == "zh"


# -- handoff --------------------------------------------------------------------------------------------
def test_during_a_handoff_the_bot_is_silent_and_the_agent_gets_everything(
    stack: StackHandle,
) -> None:
    script = Script(
        "silence",
        "u1001",
        "zh",
        "silence",
        [
            Step("say", "转人工", ("handoff",)),
            Step("say", "我的订单{order:shipped}到哪了", ("forward",)),
            Step("control", "release"),
            Step("say", "你好", ("answer",)),
        ],
    )
    results = play(stack, [script])
    assert all(r.ok for r in results), failures(results)
    handoff, forwarded, after = (r.reply for r in results)
    assert handoff.outbound is not None and handoff.handoff is not None
    assert (
        handoff.handoff["reply"]["handoffSummary"] and handoff.handoff["reply"]["handoffPriority"]
    )
    assert forwarded.outbound is None and forwarded.handoff is not None
    assert forwarded.handoff["reply"]["action"] == "forward" and forwarded.handoff["text"]
    assert after.outbound is not None
    record = stack.db()["handoffs"].find_one({"_id": handoff.message_id})
    assert (
        record is not None
        and record["status"] == "released"
        and record["reason"] == "customer_request"
    )


# -- idempotency, transcripts, DLQ ------------------------------------------------------------------
def enriched(conversation_id: str, message_id: str, text: str = "hello") -> Envelope:
    env = Envelope(
        schema_version=1,
        message_id=message_id,
        conversation_id=conversation_id,
        user_id="u2001",
        text=text,
        masked_text=text,
        language="en",
    )
    env.nlu.intent = "greeting"
    env.nlu.confidence = 0.99
    env.sent_at.GetCurrentTime()
    return env


async def produce(stack: StackHandle, items: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(TOPIC_ENRICHED, value, key=key.encode())
    finally:
        await producer.stop()


def test_a_redelivered_message_is_answered_once_and_a_claimed_one_is_resent(
    stack: StackHandle,
) -> None:
    db = stack.db()
    conversation = f"idem-{uuid.uuid4().hex[:8]}"
    fresh, claimed = uuid.uuid4().hex, uuid.uuid4().hex
    # a turn claimed just before a crash: its stored reply goes out, not a newly decided one
    db["reply_claims"].insert_one(
        {
            "_id": claimed,
            "conversation_id": conversation,
            "user_id": "u2001",
            "turn": 1,
            "state": "claimed",
            "action": "answer",
            "reply": {"action": "answer", "text": "stored reply", "language": "en", "turn": 1},
        }
    )

    async def work(session: Session) -> tuple[Reply, Reply]:
        first, resent = session.track(fresh), session.track(claimed)
        duplicate = encode(enriched(conversation, fresh))
        await produce(stack, [(conversation, duplicate)] * 3)  # redelivered twice
        await produce(stack, [(conversation, encode(enriched(conversation, claimed)))])
        await session.wait(first, 60)
        await session.wait(resent, 60)
        await asyncio.sleep(5)  # a second reply would arrive by now
        return first, resent

    first, resent = run_with_session(stack, work)
    assert first.outbound_count == 1 and first.section["action"] == "answer"
    assert resent.outbound_count == 1 and resent.section["text"] == "stored reply"
    states = {
        d["_id"]: d["state"] for d in db["conversations"].find({"conversation_id": conversation})
    }
    assert states == {fresh: "sent", claimed: "sent"}  # both transcripts written once sent
    assert db["reply_claims"].find_one({"_id": fresh})["state"] == "claimed"


def test_transcripts_store_masked_text_and_are_indexed(stack: StackHandle) -> None:
    script = Script(
        "transcript",
        "u2001",
        "en",
        "t",
        [
            Step(
                "say",
                "hi, call me on 13800138000 about order {order:shipped}",
                ("order", "answer", "ask"),
            ),
        ],
    )
    results = play(stack, [script])
    message_id = results[0].reply.message_id
    # written while the reply is produced and marked sent right after the broker's
    # acknowledgement: the reply can be read before either lands
    deadline = time.monotonic() + 10
    doc = stack.db()["conversations"].find_one({"_id": message_id})
    while (doc is None or doc["state"] != "sent") and time.monotonic() < deadline:
        time.sleep(0.2)
        doc = stack.db()["conversations"].find_one({"_id": message_id})
    assert (
        doc is not None
        and doc["state"] == "sent"
        and "13800138000" not in json.dumps(doc, default=str)
    )
    assert doc["action"] == results[0].reply.action and doc["turn"] == 1 and doc["latency_ms"] >= 0
    index_keys = [list(ix["key"]) for ix in stack.db()["conversations"].list_indexes()]
    assert ["conversation_id", "turn"] in index_keys and ["user_id", "at"] in index_keys


def test_undecodable_input_goes_to_the_dlq_with_the_reply_stage(stack: StackHandle) -> None:
    marker = uuid.uuid4().hex

    async def work(session: Session) -> dict[str, Any]:
        reply = session.track(marker)
        await produce(stack, [("c-bad", f'{{"messageId": "{marker}", broken'.encode())])
        await session.wait(reply, 60)
        return reply.dead_letter or {}

    dead = run_with_session(stack, work)
    assert dead.get("stage") == "reply" and dead.get("reason") == "malformed_json"
    assert dead.get("sourceTopic") == TOPIC_ENRICHED


# -- FAQ and readiness -------------------------------------------------------------------------------
def test_faq_seed_is_idempotent_and_readyz_reports_the_faq(stack: StackHandle) -> None:
    db = stack.db()
    expected = len(load_faq_files())
    assert seed_faq(db) == expected and seed_faq(db) == expected
    assert db["faq"].count_documents({}) == expected
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.ports.web['reply']}/readyz") as resp:
        ready = json.loads(resp.read())
    assert ready["ok"] and ready["faq"]["ok"] and ready["mongo"]["ok"] and ready["orders"]["ok"]
    assert ready["faq_mode"] in ("semantic search", "templates only")


# -- outage --------------------------------------------------------------------------------------------
def test_orders_outage_gets_a_graceful_answer_then_a_person(stack: StackHandle) -> None:
    # stops and restarts OrderService of the stack under test (its own, or `kefu stack up`'s)
    supervisor = localstack.Supervisor(stack.paths)

    async def outage(what: str) -> None:
        if what == "start":
            await asyncio.to_thread(supervisor.stop, "orders")

    script = Script(
        "outage",
        "u2001",
        "en",
        "outage",
        [
            Step("outage", "start"),
            Step("say", "Where is my order {order:shipped}?", ("order",), contains=("minute",)),
            Step("say", "please try again", ("handoff",), handoff_reason="order_service_down"),
        ],
    )
    try:
        results = play(stack, [script], outage=outage)
    finally:
        stacklib.up(
            stack.settings, stack.ports, services=("orders",), timeout=120, say=lambda _: None
        )
    assert all(r.ok for r in results), failures(results)
    assert results[0].reply.section["orderCall"]["code"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    # back to normal: the breaker half-opens after its cool-down and the next call closes it
    deadline = time.monotonic() + 60
    recovered: list[TurnResult] = []
    while time.monotonic() < deadline:
        recovered = play(
            stack,
            [
                Script(
                    "after",
                    "u2001",
                    "en",
                    "after",
                    [Step("say", "Where is my order {order:shipped}?", ("order",))],
                )
            ],
        )
        if recovered[0].reply.section.get("orderCall", {}).get("code") == "OK":
            break
        time.sleep(3)
    assert recovered and recovered[0].reply.section["orderCall"]["code"] == "OK"
