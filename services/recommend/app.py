"""The recommend Faust agents: attach recommendations where they fit; record behaviour events."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

from pymongo.errors import PyMongoError

from kefu.v1.events_pb2 import Envelope
from services.models import registry
from services.recommend.behavior import (
    BehaviorError,
    ensure_interaction_indexes_async,
    parse_behavior,
    save_interaction_async,
)
from services.recommend.gating import (
    MIN_PRODUCT_MATCH,
    SUGGESTION_TEMPLATES,
    context_product_ids,
    decide,
    names_a_budget_briefly,
    names_a_category_briefly,
    price_cap_cents,
    requested_categories,
    signals_from_envelope,
)
from services.recommend.history import HistoryCache
from services.recommend.recommender import Recommender
from services.recommend.store import load_catalog_async, load_model
from services.runtime import metrics
from services.runtime.bus import Stage
from services.runtime.envelope import add_latency, encode
from services.runtime.mongo import async_db
from services.runtime.settings import TOPIC_BEHAVIOR, TOPIC_ENRICHED, TOPIC_SENTIMENT, Settings

log = logging.getLogger(__name__)

SERVICE = "recommend"
HISTORY_PROJECTION = {"_id": 0, "user_id": 1, "product_id": 1, "kind": 1, "quantity": 1, "at": 1}
TOP_K = 3
# Stock and new products reach the recommender through the catalog; a minute is fresh enough
# for suggestions and keeps MongoDB reads off the per-message path.
REFRESH_S = 60.0


def build(settings: Settings) -> Stage:
    stage = Stage(SERVICE, settings, source=TOPIC_SENTIMENT)
    out = stage.topic(TOPIC_ENRICHED)
    behavior = stage.topic(TOPIC_BEHAVIOR)
    db = async_db(settings)
    root = settings.models_path
    state: dict[str, Any] = {"rec": None, "version": None, "checked": 0.0, "detail": "not loaded"}
    history = HistoryCache()

    def ready() -> tuple[bool, str]:
        # No published model is a valid state (a new shop): turns pass through, saying why.
        return True, str(state["detail"])

    stage.health.add_check("recommender", ready)

    async def refresh(force: bool = False) -> None:
        """Reload model, catalog and histories when a new model is published or every REFRESH_S
        (every timer tick while the catalog is empty: a stack started before `kefu seed`)."""
        version = registry.current_version(root, "recommend")
        rec = state["rec"]
        if (
            not force
            and version == state["version"]
            and rec is not None
            and len(rec.catalog or ()) > 0
            and time.monotonic() - state["checked"] < REFRESH_S
        ):
            return
        state["checked"] = time.monotonic()
        if version is None:
            state["detail"] = "no recommend model published yet (kefu train recommend)"
            return
        try:
            model, version = load_model(root, version)
            catalog = await load_catalog_async(db)
            docs = await db["interactions"].find({}, HISTORY_PROJECTION).to_list(None)
        except Exception as exc:  # keep serving with what we have
            state["detail"] = f"cannot load recommender: {type(exc).__name__}: {exc}"
            return
        loaded = history.replace_all(docs)
        state.update(
            rec=Recommender(model, catalog, version=version),
            version=version,
            detail=f"model {version}, {len(catalog)} products, {loaded} interactions",
        )
        metrics.MODEL_VERSION.labels(SERVICE, "recommend", version).set(1)

    @stage.app.task
    async def start() -> None:
        await ensure_interaction_indexes_async(db)
        await refresh(force=True)

    @stage.app.timer(10.0)
    async def reload() -> None:
        await refresh()

    async def in_handoff(conversation_id: str) -> bool:
        doc = await db["dialogue_state"].find_one({"_id": conversation_id}, {"handoff.active": 1})
        return bool(doc and (doc.get("handoff") or {}).get("active"))

    async def after_suggestions(env: Envelope, rec: Recommender | None) -> bool:
        """ "what about headphones?" / "预算两百以内" right after a list of suggestions asks for
        more of them (the budget one was "I can't help with that")."""
        named = bool(context_product_ids(env))
        if rec is None or not (
            names_a_category_briefly(env.text, rec.catalog, named)
            or names_a_budget_briefly(env.text)
        ):
            return False
        try:
            doc = await db["dialogue_state"].find_one(
                {"_id": env.conversation_id}, {"last_template_id": 1}
            )
        except PyMongoError as exc:  # unsure: an ordinary turn
            log.warning("dialogue state unreadable, no follow-up suggestions: %s", exc)
            return False
        return doc is not None and doc.get("last_template_id") in SUGGESTION_TEMPLATES

    async def recommend(env: Envelope) -> None:
        section = env.recommend
        signals = signals_from_envelope(env)
        if not signals.requested and await after_suggestions(env, state["rec"]):
            signals = replace(signals, requested=True)
        section.requested = signals.requested
        attach, why = decide(signals)
        if attach:
            try:
                if await in_handoff(env.conversation_id):
                    attach, why = False, "handoff"
            except PyMongoError as exc:  # unsure whether a person has the conversation: skip
                log.warning("handoff check failed, no recommendations this turn: %s", exc)
                attach, why = False, "handoff_unknown"
        rec = state["rec"]
        if attach and rec is None:
            attach, why = False, "no_model"
        if attach and rec is not None:
            # asked for suggestions, "耳机" is a category to choose from, not a product seen
            requested = signals.requested
            items = rec.recommend(
                history.recent(env.user_id),
                n=TOP_K,
                language=env.language,
                context_product_ids=context_product_ids(
                    env, MIN_PRODUCT_MATCH if requested else 0.0
                ),
                categories=requested_categories(env, rec.catalog) if requested else (),
                max_price_cents=price_cap_cents(env.text) if requested else None,
            )
            for s in items:
                section.items.add(
                    product_id=s.product_id,
                    name=s.name,
                    score=s.score,
                    reason=s.reason,
                    reason_code=s.reason_code,
                    price_cents=s.price_cents,
                    currency=s.currency,
                )
            section.model_version = rec.version
            if not items:
                attach, why = False, "nothing_to_recommend"
        section.attached = attach
        section.skipped_reason = why
        metrics.RECOMMENDATIONS.labels("attached" if attach else why).inc()

    @stage.app.agent(stage.source)
    async def enrich(stream: Any) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            env = await stage.decode_or_dead_letter(event)
            if env is None:
                continue
            await recommend(env)
            metrics.STAGE_SECONDS.labels(SERVICE).observe(add_latency(env, SERVICE, started))
            await out.send(key=event.key, value=encode(env))
            metrics.MESSAGES.labels(SERVICE, "ok").inc()

    @stage.app.agent(behavior)
    async def record_behavior(stream: Any) -> None:
        async for event in stream.events():
            try:
                doc = parse_behavior(event.value)
            except BehaviorError as exc:
                await stage.dead_letter(event, exc.reason, exc.detail)
                continue
            while True:
                try:
                    if await save_interaction_async(db, doc):
                        history.add(doc)
                    break
                except Exception as exc:  # MongoDB away: hold the event rather than lose it
                    stage.app.log.error("cannot store behaviour event: %s", exc)
                    await asyncio.sleep(1.0)

    return stage
