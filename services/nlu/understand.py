"""nlu's per-batch logic as plain functions: texts → intent, ranking, out-of-scope, entities."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kefu.v1.events_pb2 import Envelope
from services.models.openings import reread_openings
from services.nlu.entities import ProductMatcher, extract
from services.runtime.script import to_simplified


def embedding_bytes(vector: np.ndarray) -> bytes:
    """float16 little-endian: 768 bytes for 384 dims, enough precision for the sentiment head
    (cosine to float32 > 0.9999) at a quarter of the JSON size of float32."""
    return np.asarray(vector, dtype="<f2").tobytes()


def embedding_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f2").astype(np.float32)


# Token states travel to sentiment for messages up to this many tokens (float16: 96 KB at 128,
# 131 KB as proto3 JSON base64, under the 256 KB envelope limit); a longer text is rare in chat,
# and sentiment runs the encoder for it instead.
MAX_CARRIED_TOKENS = 128


@dataclass
class NluOutputs:
    embeddings: np.ndarray  # [texts, dim]
    predictions: list[Any]  # services.models.intent.IntentPrediction per text
    # token states after ``states_layer`` layers, one [tokens, dim] array per text, for
    # sentiment's fine-tuned layers; None when the encoder exposes none
    states: list[np.ndarray] | None = None
    states_layer: int | None = None


def model_text(env: Envelope) -> str:
    """What the models read: the normalised text in simplified characters (PII does not matter
    to them; services/runtime/script.py says why)."""
    return to_simplified(env.text)


def fill_nlu(
    env: Envelope,
    prediction: Any,  # services.models.intent.IntentPrediction
    model_version: str,
    encoder_version: str,
    embedding: np.ndarray | None,
    matcher: ProductMatcher | None,
    states: np.ndarray | None = None,
    states_layer: int | None = None,
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
    if states is not None and states_layer is not None and len(states) <= MAX_CARRIED_TOKENS:
        section.states = np.asarray(states, dtype="<f2").tobytes()
        section.states_layer = states_layer
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


def carried_states_layer(encoder: Any, intent_model: Any) -> int | None:
    """The layer whose token states nlu computes and carries: the intent model's when it has
    tuned layers (computed anyway), else the encoder's top exposed one (sentiment's tuned
    layers start there; the states come out of the same pass at no extra cost)."""
    layer = intent_model.states_layer
    exposed: frozenset[int] = getattr(encoder, "state_layers", frozenset())
    if layer is None and exposed:
        layer = max(exposed)
    return layer


def predict_batch(encoder: Any, intent_model: Any, texts: Sequence[str]) -> NluOutputs:
    """One encoder pass for the batch (sorted by length inside the encoder), then the head;
    a head with fine-tuned top layers gets the token states of that same pass, which are also
    returned for sentiment. Messages read as small talk that open with a greeting ("你好，在吗？
    订单…到哪了") are read again without it (services/models/openings.py)."""
    layer = carried_states_layer(encoder, intent_model)
    if layer is None:
        embeddings = encoder.embed(list(texts), prefix="query: ")
        predictions = intent_model.predict(embeddings, list(texts))
        states = None
    else:
        embeddings, states = encoder.embed_with_states(list(texts), layer, prefix="query: ")
        tuned_states = states if intent_model.states_layer is not None else None
        predictions = intent_model.predict(embeddings, list(texts), tuned_states)
    predictions = reread_openings(
        texts, predictions, lambda rest: predict_intents(encoder, intent_model, rest)
    )
    return NluOutputs(embeddings, predictions, states, layer)


def predict_intents(encoder: Any, intent_model: Any, texts: list[str]) -> list[Any]:
    """The intent model's reading of ``texts`` alone (one encoder pass, nothing carried)."""
    layer = intent_model.states_layer
    if layer is None:
        return list(intent_model.predict(encoder.embed(texts, prefix="query: "), texts))
    embeddings, states = encoder.embed_with_states(texts, layer, prefix="query: ")
    return list(intent_model.predict(embeddings, texts, states))
