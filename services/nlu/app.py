"""The nlu Faust agent: batches messages through the encoder and the intent head."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from services.models.encoder import Encoder
from services.models.hotswap import ModelWatcher
from services.models.intent import IntentModel
from services.nlu.entities import ProductMatcher
from services.nlu.understand import NluOutputs, fill_nlu, model_text, predict_batch
from services.runtime import metrics
from services.runtime.bus import Stage, take_batches
from services.runtime.envelope import add_latency, encode
from services.runtime.mongo import async_db
from services.runtime.settings import TOPIC_MESSAGES, TOPIC_NLU, Settings

SERVICE = "nlu"
# Batching: up to 32 messages, waiting at most 3 ms for more. At low traffic a message waits at most
# 3 ms; under load the encoder runs full, length-sorted batches (several times the throughput).
MAX_BATCH = 32
MAX_WAIT_S = 0.003
CATALOG_REFRESH_S = 60.0


def build(settings: Settings) -> Stage:
    stage = Stage(SERVICE, settings, source=TOPIC_MESSAGES)
    out = stage.topic(TOPIC_NLU)
    root = settings.models_path
    encoders: ModelWatcher[Encoder] = ModelWatcher(
        root, "encoder", lambda d: Encoder.load(d), on_swap=_on_swap("encoder")
    )
    intents: ModelWatcher[IntentModel] = ModelWatcher(
        root, "intent", partial(IntentModel.load, serving=True), on_swap=_on_swap("intent")
    )
    # one inference thread: onnxruntime uses its own intra-op threads; the event loop stays free
    # to fetch and send while a batch runs
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlu-infer")
    state: dict[str, Any] = {"matcher": None, "catalog_at": 0.0, "models": "not loaded"}
    products = async_db(settings)["products"]

    def models_ready() -> tuple[bool, str]:
        if encoders.version and intents.version:
            return True, f"encoder {encoders.version}, intent {intents.version}"
        return False, str(state["models"])

    stage.health.add_check("models", models_ready)

    @stage.app.task
    async def load_models() -> None:
        loop = asyncio.get_running_loop()
        while True:  # until published: /readyz says why, the agent holds messages meanwhile
            try:
                if encoders.version is None:
                    await loop.run_in_executor(executor, encoders.load)
                await loop.run_in_executor(executor, intents.load)
                # the first inference allocates buffers (seconds); not on a customer's message
                await loop.run_in_executor(
                    executor, predict_batch, encoders.current(), intents.current(), ["你好 hello"]
                )
                state["models"] = "loaded"
                return
            except Exception as exc:
                state["models"] = f"cannot load models (retrying every 5 s): {exc}"
                stage.app.log.error(state["models"])
                await asyncio.sleep(5.0)

    async def matcher() -> ProductMatcher | None:
        now = time.monotonic()
        if now - state["catalog_at"] > CATALOG_REFRESH_S:
            state["catalog_at"] = now
            try:
                docs = await products.find({}, {"name_en": 1, "name_zh": 1}).to_list(None)
                state["matcher"] = ProductMatcher(docs)
            except Exception as exc:  # entities without products beat no entities at all
                stage.app.log.warning("catalog refresh failed: %s", exc)
        return state["matcher"]

    @stage.app.agent(stage.source)
    async def understand(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for batch in take_batches(stream, MAX_BATCH, MAX_WAIT_S):
            while not (encoders.version and intents.version):
                await asyncio.sleep(0.5)  # models still loading: hold the batch, lose nothing
            started = time.perf_counter()
            valid = await stage.decode_batch(batch)
            if not valid:
                continue
            texts = [model_text(env) for _, env in valid]
            infer_started = time.perf_counter()
            outputs = await loop.run_in_executor(
                executor, _poll_and_predict, encoders, intents, texts
            )
            metrics.MODEL_INFERENCE_SECONDS.labels(SERVICE, "encoder+intent").observe(
                time.perf_counter() - infer_started
            )
            metrics.MODEL_BATCH_SIZE.labels(SERVICE).observe(len(valid))
            product_matcher = await matcher()
            for i, (event, env) in enumerate(valid):
                fill_nlu(
                    env,
                    outputs.predictions[i],
                    intents.version or "",
                    encoders.version or "",
                    outputs.embeddings[i],
                    product_matcher,
                    outputs.states[i] if outputs.states is not None else None,
                    outputs.states_layer,
                )
                metrics.INTENTS.labels(env.nlu.intent, env.language or "other").inc()
                # the batch's shared wait and inference count for every message in it
                elapsed = add_latency(env, SERVICE, started)
                metrics.STAGE_SECONDS.labels(SERVICE).observe(elapsed)
                await out.send(key=event.key, value=encode(env))
            metrics.MESSAGES.labels(SERVICE, "ok").inc(len(valid))

    return stage


def _poll_and_predict(
    encoders: ModelWatcher[Encoder], intents: ModelWatcher[IntentModel], texts: list[str]
) -> NluOutputs:
    """A newer published version first (hot swap between batches), then the batch: one hand-off
    to the inference thread per batch."""
    encoders.poll()
    intents.poll()
    return predict_batch(encoders.current(), intents.current(), texts)


def _on_swap(model: str):  # type: ignore[no-untyped-def]
    def record(version: str, _: object) -> None:
        metrics.MODEL_VERSION.labels(SERVICE, model, version).set(1)

    return record
