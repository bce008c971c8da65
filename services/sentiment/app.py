"""The sentiment Faust agent: the sentiment model on what nlu carries (its token states for
fine-tuned layers, or its embedding for a dense head): one encoder pass serves both stages."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from services.models.encoder import Encoder
from services.models.hotswap import ModelWatcher
from services.models.sentiment import SentimentModel
from services.runtime import metrics
from services.runtime.bus import Stage, take_batches
from services.runtime.envelope import add_latency, encode
from services.runtime.script import to_simplified
from services.runtime.settings import TOPIC_NLU, TOPIC_SENTIMENT, Settings
from services.sentiment.logic import embeddings_for, fill_sentiment, states_for

SERVICE = "sentiment"
MAX_BATCH = 32
MAX_WAIT_S = 0.003


def build(settings: Settings) -> Stage:
    stage = Stage(SERVICE, settings, source=TOPIC_NLU)
    out = stage.topic(TOPIC_SENTIMENT)
    root = settings.models_path
    # The encoder is loaded lazily: only messages without a usable carried embedding need it.
    encoders: ModelWatcher[Encoder] = ModelWatcher(root, "encoder", lambda d: Encoder.load(d))
    heads: ModelWatcher[SentimentModel] = ModelWatcher(
        root, "sentiment", partial(SentimentModel.load, serving=True)
    )
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentiment-infer")
    state = {"models": "not loaded"}

    def models_ready() -> tuple[bool, str]:
        if heads.version:
            return (
                True,
                f"sentiment {heads.version}; encoder {encoders.version or 'loaded on demand'}",
            )
        return False, state["models"]

    stage.health.add_check("models", models_ready)

    @stage.app.task
    async def load_models() -> None:
        while True:  # until published: /readyz says why, the agent holds messages meanwhile
            try:
                await asyncio.get_running_loop().run_in_executor(executor, heads.load)
                state["models"] = "loaded"
                return
            except Exception as exc:
                state["models"] = f"cannot load the sentiment model (retrying every 5 s): {exc}"
                stage.app.log.error(state["models"])
                await asyncio.sleep(5.0)

    def infer(envs: list[Any]) -> tuple[list[Any], int]:
        heads.poll()
        from services.models import registry

        model = heads.current()
        texts = [to_simplified(e.text) for e in envs]
        encoder_version = registry.current_version(root, "encoder") or ""
        layer = model.states_layer
        if layer is not None:
            assert model.tuned is not None
            states, fresh = states_for(
                envs, texts, _LazyEncoder(encoders), encoder_version, layer, model.tuned.hidden
            )
            return model.predict(None, texts, states), fresh
        reuse_all = all(e.nlu.encoder_version == encoder_version and e.nlu.embedding for e in envs)
        encoder = (
            _LazyEncoder(encoders) if not reuse_all else _DimOnly(len(envs[0].nlu.embedding) // 2)
        )
        embeddings, fresh = embeddings_for(envs, texts, encoder, encoder_version)
        return model.predict(embeddings, texts), fresh

    @stage.app.agent(stage.source)
    async def score(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for batch in take_batches(stream, MAX_BATCH, MAX_WAIT_S):
            while not heads.version:
                await asyncio.sleep(0.5)
            started = time.perf_counter()
            valid = await stage.decode_batch(batch)
            if not valid:
                continue
            infer_started = time.perf_counter()
            predictions, fresh = await loop.run_in_executor(executor, infer, [e for _, e in valid])
            metrics.MODEL_INFERENCE_SECONDS.labels(SERVICE, "sentiment").observe(
                time.perf_counter() - infer_started
            )
            if fresh:
                metrics.MESSAGES.labels(SERVICE, "encoder_rerun").inc(fresh)
            for (event, env), prediction in zip(valid, predictions, strict=True):
                fill_sentiment(env, prediction, heads.version or "")
                metrics.SENTIMENTS.labels(env.sentiment.label).inc()
                metrics.STAGE_SECONDS.labels(SERVICE).observe(add_latency(env, SERVICE, started))
                await out.send(key=event.key, value=encode(env))
            metrics.MESSAGES.labels(SERVICE, "ok").inc(len(valid))

    return stage


class _LazyEncoder:
    """The encoder, loaded on first use (most batches reuse what nlu carries)."""

    def __init__(self, watcher: ModelWatcher[Encoder]) -> None:
        self._watcher = watcher

    @property
    def dim(self) -> int:
        return int(self._watcher.current().dim)

    def embed(self, texts: list[str], prefix: str = "query: ") -> Any:
        return self._watcher.current().embed(texts, prefix=prefix)

    def embed_with_states(self, texts: list[str], layer: int, prefix: str = "query: ") -> Any:
        return self._watcher.current().embed_with_states(texts, layer, prefix=prefix)


class _DimOnly:
    def __init__(self, dim: int) -> None:
        self.dim = dim

    def embed(self, texts: list[str], prefix: str = "query: ") -> Any:
        raise AssertionError("every embedding was carried; the encoder is not needed")
