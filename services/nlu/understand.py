"""nlu's per-batch logic as plain functions: texts → intent, ranking, out-of-scope, entities."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from kefu.v1.events_pb2 import Envelope
from services.nlu.entities import ProductMatcher, extract


def embedding_bytes(vector: np.ndarray) -> bytes:
    """float16 little-endian: 768 bytes for 384 dims, enough precision for the sentiment head
    (cosine to float32 > 0.9999) at a quarter of the JSON size of float32."""
    return np.asarray(vector, dtype="<f2").tobytes()


def embedding_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f2").astype(np.float32)


def model_text(env: Envelope) -> str:
    """What the models read: the normalised text (PII does not matter to them)."""
    return env.text


def fill_nlu(
    env: Envelope,
    prediction: Any,  # services.models.intent.IntentPrediction
    model_version: str,
    encoder_version: str,
    embedding: np.ndarray | None,
    matcher: ProductMatcher | None,
) -> None:
    section = env.nlu
    section.intent = "out_of_scope" if prediction.out_of_scope else prediction.intent
    section.confidence = float(prediction.confidence)
    section.out_of_scope = bool(prediction.out_of_scope)
    for intent, score in prediction.ranking[:3]:
        section.ranking.add(intent=intent, score=float(score))
    section.model_version = model_version
    section.encoder_version = encoder_version
    if embedding is not None:
        section.embedding = embedding_bytes(embedding)
    today = dt.datetime.fromtimestamp(env.sent_at.seconds or env.received_at.seconds, dt.UTC).date()
    pii = [(p.type, p.start, p.end) for p in env.ingest.pii]
    for ent in extract(env.text, today, matcher, pii):
        section.entities.add(
            type=ent.type,
            text=ent.text,
            start=ent.start,
            end=ent.end,
            value=ent.value,
            unit=ent.unit,
            score=ent.score,
        )


def predict_batch(
    encoder: Any, intent_model: Any, texts: Sequence[str]
) -> tuple[np.ndarray, list[Any]]:
    """One encoder pass for the batch (sorted by length inside the encoder), then the head;
    a head with fine-tuned top layers gets the token states of that same pass."""
    layer = intent_model.states_layer
    if layer is None:
        embeddings = encoder.embed(list(texts), prefix="query: ")
        return embeddings, intent_model.predict(embeddings, list(texts))
    embeddings, states = encoder.embed_with_states(list(texts), layer, prefix="query: ")
    return embeddings, intent_model.predict(embeddings, list(texts), states)
