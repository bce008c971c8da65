"""The ingest Faust agent: thin wiring around services.ingest.logic."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pymongo.errors import BulkWriteError

from services.ingest.logic import enrich, parse_inbound
from services.ingest.text import detect_language
from services.runtime import metrics
from services.runtime.bus import Stage, take_batches
from services.runtime.envelope import EnvelopeError, add_latency, encode
from services.runtime.mongo import async_db
from services.runtime.retry import retry_until_ok
from services.runtime.settings import TOPIC_INBOUND, TOPIC_MESSAGES, Settings

SERVICE = "ingest"


def build(settings: Settings) -> Stage:
    stage = Stage(SERVICE, settings, source=TOPIC_INBOUND)
    out = stage.topic(TOPIC_MESSAGES)
    # message_ids already forwarded; in MongoDB so de-duplication survives restarts and is shared
    # by every ingest replica (a message's replicas are in one partition, but rebalancing moves them)
    seen = async_db(settings)["ingest_seen"]
    mongo_state = {"ok": False, "detail": "not checked yet"}

    def set_mongo(ok: bool, detail: str) -> None:
        mongo_state.update(ok=ok, detail=detail)

    stage.health.add_check("mongo", lambda: (bool(mongo_state["ok"]), str(mongo_state["detail"])))

    @stage.app.task
    async def check_mongo() -> None:
        await retry_until_ok(lambda: seen.database.command("ping"), "mongo ping", set_mongo)

    @stage.app.task
    async def warm_up() -> None:
        # lingua loads its language models on first use (seconds): do it before the first message
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, detect_language, "where is my order, it is late again")

    @stage.app.agent(stage.source)
    async def ingest(stream: Any) -> None:
        # small batches: one MongoDB round trip de-duplicates the batch; 2 ms bounded wait
        async for batch in take_batches(stream, 256, 0.002):
            await process_batch(batch)

    async def process_batch(batch: list[Any]) -> None:
        valid = []
        for event in batch:
            try:
                valid.append((event, parse_inbound(event.value)))
            except EnvelopeError as exc:
                await stage.dead_letter(event, exc.reason, exc.detail)
        if not valid:
            return
        # the batch's de-duplication lookup counts as time inside ingest for each of its messages
        batch_started = time.perf_counter()
        ids = [env.message_id for _, env in valid]

        async def already_seen() -> set[str]:
            # one indexed lookup for the batch (FerretDB on SQLite too, with its patch 0002)
            cursor = seen.find({"_id": {"$in": list(set(ids))}}, {"_id": 1})
            return {d["_id"] async for d in cursor}

        done = await retry_until_ok(already_seen, "dedup lookup", set_mongo)
        pending = []
        for event, env in valid:
            if env.message_id in done:
                metrics.MESSAGES.labels(SERVICE, "duplicate").inc()
                continue
            done.add(env.message_id)
            enrich(env, settings.max_text_chars)
            elapsed = add_latency(env, SERVICE, batch_started)
            metrics.STAGE_SECONDS.labels(SERVICE).observe(elapsed)
            fut = await out.send(key=event.key or env.conversation_id.encode(), value=encode(env))
            pending.append((fut, env.message_id))
        # record as seen only once the broker has the message: a crash in between re-delivers
        # the input, and the reply stage's idempotency absorbs the possible second copy
        for fut, _ in pending:
            await fut
        if pending:
            docs = [{"_id": mid, "at": time.time()} for _, mid in pending]

            async def record() -> None:
                try:
                    await seen.insert_many(docs, ordered=False)
                except BulkWriteError as exc:  # already recorded by a previous attempt
                    if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                        raise

            await retry_until_ok(record, "dedup record", set_mongo)
            metrics.MESSAGES.labels(SERVICE, "ok").inc(len(pending))

    return stage
