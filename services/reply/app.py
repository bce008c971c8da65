"""The reply Faust agents: thin wiring around services.reply.decide.

- ``reply`` consumes kefu.enriched.v1, decides one action per turn and emits the envelope with
  its reply section on kefu.outbound.v1 (and on kefu.handoff.v1 for handoff / forward);
- ``control`` consumes kefu.control.v1: ``release`` hands a conversation back to the bot.

Idempotency (see services.reply.transcript): claim the turn in ``conversations`` before sending,
mark it sent after the broker's acknowledgement; a redelivered message is skipped or resent,
never answered twice. MongoDB outages are waited out (retry_until_ok) rather than acknowledged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf import json_format
from pymongo.errors import ConnectionFailure, OperationFailure

from kefu.v1.events_pb2 import ControlEvent, Envelope, ReplySection
from services.reply.decide import Decision, Deps, decide, turn_from_envelope
from services.reply.faq import FaqService
from services.reply.orders_client import GrpcOrdersClient
from services.reply.state import DialogueState, StateStore
from services.reply.transcript import CLAIMED, SENT, TranscriptStore, turn_doc
from services.runtime import envelope as codec
from services.runtime import metrics
from services.runtime.bus import Stage, take_batches
from services.runtime.mongo import CONVERSATION_ID_RE, MESSAGE_ID_RE, USER_ID_RE, async_db
from services.runtime.retry import retry_until_ok
from services.runtime.settings import (
    TOPIC_CONTROL,
    TOPIC_ENRICHED,
    TOPIC_HANDOFF,
    TOPIC_OUTBOUND,
    Settings,
)

T = TypeVar("T")
SERVICE = "reply"
HANDOFFS_COLLECTION = "handoffs"
FAQ_REFRESH_S = 15.0
# Up to 64 turns at a time, waiting at most 2 ms for more: concurrency across conversations
# under load, almost no added latency when traffic is light.
MAX_BATCH = 64
MAX_WAIT_S = 0.002
log = logging.getLogger(__name__)


def validate_ids(env: Envelope) -> None:
    """Identifiers are checked against strict patterns before they reach any query."""
    codec.require_fields(env, ("message_id", "conversation_id", "user_id"))
    for name, pattern in (
        ("message_id", MESSAGE_ID_RE),
        ("conversation_id", CONVERSATION_ID_RE),
        ("user_id", USER_ID_RE),
    ):
        if not pattern.match(getattr(env, name)):
            raise codec.EnvelopeError("invalid_field", f"{name} does not match {pattern.pattern}")


def by_conversation(events: list[Any]) -> list[list[Any]]:
    """Events grouped by Kafka key (the conversation), each group in arrival order."""
    groups: dict[Any, list[Any]] = {}
    for event in events:
        groups.setdefault(event.key, []).append(event)
    return list(groups.values())


def handoff_doc(env: Envelope, reply: ReplySection) -> dict[str, Any]:
    """The agent desk's record of a handoff (one per handoff turn)."""
    return {
        "_id": env.message_id,
        "conversation_id": env.conversation_id,
        "user_id": env.user_id,
        "language": reply.language,
        "reason": reply.handoff_reason,
        "priority": reply.handoff_priority,
        "summary": reply.handoff_summary,
        "status": "open",
        "at": dt.datetime.now(dt.UTC),
    }


def build(settings: Settings) -> Stage:
    stage = Stage(SERVICE, settings, source=TOPIC_ENRICHED)
    outbound = stage.topic(TOPIC_OUTBOUND)
    handoff_topic = stage.topic(TOPIC_HANDOFF)
    control_topic = stage.topic(TOPIC_CONTROL)
    db = async_db(settings)
    states = StateStore(db)
    transcripts = TranscriptStore(db)
    handoffs = db[HANDOFFS_COLLECTION]
    # one thread for encoder work (FAQ queries, index builds): the event loop stays free
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reply-faq")
    faq = FaqService(
        db, settings.models_path, executor, cache_dir=Path(settings.cache_dir) / "embeddings"
    )
    runtime: dict[str, Any] = {"orders": None}
    ready = asyncio.Event()
    mongo_state = {"ok": False, "detail": "not checked yet"}

    def set_mongo(ok: bool, detail: str) -> None:
        mongo_state.update(ok=ok, detail=detail)

    def orders_check() -> tuple[bool, str]:
        client: GrpcOrdersClient | None = runtime["orders"]
        if client is None:
            return False, "client not started"
        channel = client.channel_state()
        breaker = client.breaker.state
        # half-open is ready: the next call is the trial that closes the breaker again
        ok = channel not in ("TRANSIENT_FAILURE", "SHUTDOWN") and breaker != "open"
        return ok, f"{client.address}: channel {channel}, breaker {breaker}"

    stage.health.add_check("mongo", lambda: (bool(mongo_state["ok"]), str(mongo_state["detail"])))
    stage.health.add_check("faq", faq.check)
    stage.health.add_check("orders", orders_check)

    @stage.app.task
    async def start_up() -> None:
        async def prepare() -> None:
            await db.command("ping")
            await transcripts.ensure_indexes()
            await states.ensure_indexes()
            await handoffs.create_index([("status", 1), ("at", 1)])
            await handoffs.create_index([("conversation_id", 1)])

        await retry_until_ok(prepare, "mongo start-up", set_mongo)
        # the grpc.aio channel belongs to this event loop, so it is created inside it
        runtime["orders"] = GrpcOrdersClient(settings)
        await retry_until_ok(faq.load, "FAQ load", set_mongo)
        stage.health.notes["faq_mode"] = faq.mode
        ready.set()

    @stage.app.timer(FAQ_REFRESH_S)
    async def refresh_faq() -> None:
        if ready.is_set():
            try:
                await faq.refresh()
            except Exception as exc:  # keep the current index; readiness shows the detail
                log.warning("FAQ refresh failed: %s", exc)
            stage.health.notes["faq_mode"] = faq.mode

    async def with_mongo(op: Callable[[], Awaitable[T]], what: str) -> T:
        """Wait out a MongoDB outage (the message stays unacknowledged, nothing is lost); any
        other database error is not going to heal by waiting and goes up to the DLQ."""
        delay = 0.2
        while True:
            try:
                result = await op()
            except (ConnectionFailure, OperationFailure) as exc:
                # ConnectionFailure includes timeouts and server selection. FerretDB on SQLite
                # also reports transient conditions as OperationFailure code 1 ("database is
                # locked", "interrupted", a transaction cut short while it stops): wait them out too.
                if isinstance(exc, OperationFailure) and not _transient(exc):
                    raise
                if mongo_state["ok"]:
                    log.error("%s failed, retrying until MongoDB is back: %s", what, exc)
                set_mongo(False, f"{what} failing: {type(exc).__name__}: {str(exc)[:200]}")
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
                continue
            if not mongo_state["ok"]:
                set_mongo(True, "ok")
            return result

    async def record_handoff(env: Envelope, reply: ReplySection) -> None:
        """The agent desk's record of a handoff turn; a second write of it changes nothing."""
        await handoffs.update_one(
            {"_id": env.message_id}, {"$setOnInsert": handoff_doc(env, reply)}, upsert=True
        )

    async def send_reply(key: bytes, env: Envelope) -> None:
        """Outbound unless forwarding; handoff topic for handoff and forward; wait for acks."""
        action = env.reply.action
        # nlu's embedding served sentiment and the FAQ search; replies need not carry it
        env.nlu.ClearField("embedding")
        pending = []
        if action != "forward":
            pending.append(await outbound.send(key=key, value=codec.encode(env)))
        if action in ("handoff", "forward"):
            pending.append(await handoff_topic.send(key=key, value=codec.encode(env)))
        for fut in pending:
            await fut
        if action != "forward" and env.sent_at.seconds:
            e2e = time.time() - codec.ts_seconds(env.sent_at)
            metrics.END_TO_END_SECONDS.observe(max(0.0, e2e))

    async def resend(key: bytes, env: Envelope, record: dict[str, Any]) -> None:
        """A turn claimed but not confirmed sent (crash in between): send the same reply."""
        reply = json_format.ParseDict(record["reply"], ReplySection(), ignore_unknown_fields=True)
        env.reply.CopyFrom(reply)
        is_handoff = reply.action == "handoff"
        snapshot = record.get("state_after")
        if snapshot:
            current = await with_mongo(
                lambda: states.load(env.conversation_id, env.user_id), "state load"
            )
            if current.turn < reply.turn:  # the state write was lost with the crash
                restored = DialogueState.from_doc(snapshot)
                await with_mongo(lambda: states.save(restored, handoff=is_handoff), "state save")
        if is_handoff:  # the crash may have come before the agent desk's record
            await with_mongo(lambda: record_handoff(env, reply), "handoff record")
        await send_reply(key, env)
        await with_mongo(lambda: transcripts.mark_sent(record), "transcript write")
        metrics.MESSAGES.labels(SERVICE, "resent").inc()

    async def handle(event: Any) -> None:
        started = time.perf_counter()
        env = await stage.decode_or_dead_letter(event)
        if env is None:
            return
        try:
            validate_ids(env)
        except codec.EnvelopeError as exc:
            await stage.dead_letter(event, exc.reason, exc.detail)
            return
        key = event.key or env.conversation_id.encode()
        # both reads at once: one round trip of waiting instead of two
        record, state = await with_mongo(
            lambda: asyncio.gather(
                transcripts.get(env.message_id), states.load(env.conversation_id, env.user_id)
            ),
            "transcript and state lookup",
        )
        if record is not None:
            if record.get("state") == SENT:
                metrics.MESSAGES.labels(SERVICE, "duplicate").inc()
                return
            await resend(key, env, record)
            return
        assert runtime["orders"] is not None
        deps = Deps(orders=runtime["orders"], faq=faq)
        decision: Decision = await decide(turn_from_envelope(env), state, deps)
        section = decision.to_section(state)
        env.reply.CopyFrom(section)
        elapsed = codec.add_latency(env, SERVICE, started)
        doc = turn_doc(
            env,
            section,
            elapsed * 1000.0,
            state.to_doc(),
            handoff_event=decision.action in ("handoff", "forward"),
        )
        other = await with_mongo(lambda: transcripts.claim(doc), "transcript claim")
        if other is not None:  # another attempt claimed this message meanwhile
            if other.get("state") == CLAIMED:
                await resend(key, env, other)
            else:
                metrics.MESSAGES.labels(SERVICE, "duplicate").inc()
            return
        save_state = with_mongo(
            lambda: states.save(state, handoff=decision.action == "handoff"), "state save"
        )
        if decision.action == "handoff":
            # The agent desk acts on the handoff event: the state with its handoff (one write)
            # and the desk's record exist before the event does.
            await asyncio.gather(
                save_state, with_mongo(lambda: record_handoff(env, section), "handoff record")
            )
            metrics.HANDOFFS.labels(decision.handoff_reason).inc()
            await send_reply(key, env)
        else:
            # The claim already holds the reply and the state after it (resend() restores the
            # state from it after a crash), so the state write need not delay the answer: one
            # database round trip less between the customer's message and the reply.
            await asyncio.gather(save_state, send_reply(key, env))
        await with_mongo(lambda: transcripts.mark_sent(doc), "transcript write")
        metrics.REPLIES.labels(decision.action, decision.language).inc()
        metrics.MESSAGES.labels(SERVICE, "ok").inc()
        metrics.STAGE_SECONDS.labels(SERVICE).observe(elapsed)

    async def guarded(handler: Callable[[Any], Awaitable[None]], event: Any) -> None:
        """A bug or a permanent database error must not stop the stream: log it, DLQ it."""
        try:
            await handler(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("reply stage failed on %s", getattr(event.message, "topic", "?"))
            await stage.dead_letter(event, "reply_failed", f"{type(exc).__name__}: {exc}")

    async def in_order(events: list[Any]) -> None:
        for event in events:
            await guarded(handle, event)

    @stage.app.agent(stage.source)
    async def reply(stream: Any) -> None:
        # Turns wait on MongoDB and OrderService, so different conversations are handled
        # concurrently; the turns of one conversation stay strictly in order (dialogue state).
        async for batch in take_batches(stream, MAX_BATCH, MAX_WAIT_S):
            await ready.wait()  # indexes, FAQ and the orders client first
            await asyncio.gather(*(in_order(group) for group in by_conversation(batch)))

    @stage.app.agent(control_topic)
    async def control(stream: Any) -> None:
        async for event in stream.events():
            await ready.wait()
            await guarded(handle_control, event)

    async def handle_control(event: Any) -> None:
        ctl = ControlEvent()
        try:
            codec.decode(event.value, ctl)
        except codec.EnvelopeError as exc:
            await stage.dead_letter(event, exc.reason, exc.detail)
            return
        if not CONVERSATION_ID_RE.match(ctl.conversation_id):
            await stage.dead_letter(event, "invalid_field", "conversation_id missing or invalid")
            return
        if ctl.action != "release":
            await stage.dead_letter(
                event, "unknown_action", f"control action {ctl.action!r}: only 'release' exists"
            )
            return
        released = await with_mongo(
            lambda: states.release_handoff(ctl.conversation_id, ctl.agent_id), "handoff release"
        )
        await with_mongo(
            lambda: handoffs.update_many(
                {"conversation_id": ctl.conversation_id, "status": "open"},
                {
                    "$set": {
                        "status": "released",
                        "released_at": dt.datetime.now(dt.UTC),
                        "agent_id": ctl.agent_id,
                    }
                },
            ),
            "handoff record",
        )
        metrics.MESSAGES.labels(SERVICE, "released" if released else "release_noop").inc()
        log.info(
            "conversation released to the bot",
            extra={"conversation_id": ctl.conversation_id, "was_active": released},
        )

    return stage


_TRANSIENT_MARKERS = (
    "database is locked",
    "sqlite_busy",
    "interrupted",
    "already been committed",
    "rolled back",
    "shutdown",
    "shutting down",
    "context canceled",  # FerretDB cancels in-flight SQLite transactions when it stops
)


def _transient(exc: OperationFailure) -> bool:
    """FerretDB/SQLite errors that clear up by themselves (code 1 with these messages), and
    MongoDB's interrupted / shutting-down codes."""
    if exc.code in (11600, 11602, 91, 189):
        return True
    text = str(exc).lower()
    # code 1, or none at all: FerretDB's errors from a cancelled transaction carry no code
    return exc.code in (1, None) and any(marker in text for marker in _TRANSIENT_MARKERS)
