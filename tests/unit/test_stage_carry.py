"""What nlu carries to sentiment (embedding, token states) and how sentiment uses or recomputes it."""

from __future__ import annotations

from typing import Any

import numpy as np

from kefu.v1.events_pb2 import Envelope
from services.models.intent import IntentPrediction
from services.models.sentiment import SentimentPrediction
from services.nlu.understand import MAX_CARRIED_TOKENS, fill_nlu, predict_batch
from services.sentiment.logic import carried_states, fill_sentiment, states_for

DIM = 8
PREDICTION = IntentPrediction("track_order", 0.9, [("track_order", 0.9)], False)


def _states(tokens: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(tokens, DIM)).astype(np.float32)


def _nlu_envelope(text: str, states: np.ndarray | None, layer: int | None = 8) -> Envelope:
    env = Envelope(text=text)
    fill_nlu(env, PREDICTION, "intent-v", "enc-v", np.ones(DIM), None, states, layer)
    return env


def test_short_messages_carry_their_token_states_in_float16() -> None:
    states = _states(12)
    env = _nlu_envelope("where is my order", states)
    assert env.nlu.states_layer == 8 and len(env.nlu.states) == 12 * DIM * 2
    back = carried_states(env, "enc-v", 8, DIM)
    assert back is not None and back.shape == (12, DIM)
    np.testing.assert_allclose(back, states, atol=2e-3)


def test_long_messages_and_missing_states_are_not_carried() -> None:
    long = _nlu_envelope("x", _states(MAX_CARRIED_TOKENS + 1))
    assert not long.nlu.states and long.nlu.states_layer == 0
    assert not _nlu_envelope("x", None).nlu.states
    assert not _nlu_envelope("x", _states(3), layer=None).nlu.states


def test_states_from_another_encoder_or_layer_are_not_used() -> None:
    env = _nlu_envelope("hello", _states(4))
    assert carried_states(env, "enc-other", 8, DIM) is None
    assert carried_states(env, "enc-v", 9, DIM) is None
    assert carried_states(env, "enc-v", 8, DIM + 1) is None  # size does not fit the width


class RecordingEncoder:
    """Token states by a rule (text length), recording which texts it was asked for."""

    state_layers = frozenset({8})

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed_with_states(
        self, texts: list[str], layer: int, prefix: str = "query: "
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        self.calls.append(list(texts))
        return np.ones((len(texts), DIM), np.float32), [_states(len(t), 1) for t in texts]

    def embed(self, texts: list[str], prefix: str = "query: ") -> np.ndarray:
        self.calls.append(list(texts))
        return np.ones((len(texts), DIM), np.float32)


def test_sentiment_recomputes_only_the_states_that_were_not_carried() -> None:
    carried = _nlu_envelope("carried", _states(5))
    long = _nlu_envelope("a long rant", _states(MAX_CARRIED_TOKENS + 1))
    encoder = RecordingEncoder()
    envs = [carried, long]
    states, fresh = states_for(envs, [e.text for e in envs], encoder, "enc-v", 8, DIM)
    assert fresh == 1 and encoder.calls == [["a long rant"]]
    assert [s.shape for s in states] == [(5, DIM), (len("a long rant"), DIM)]


def test_sentiment_clears_the_states_and_keeps_the_embedding_for_reply() -> None:
    env = _nlu_envelope("hi", _states(3))
    fill_sentiment(env, SentimentPrediction("neutral", {"neutral": 1.0}, False, ""), "s-v")
    assert not env.nlu.states and env.nlu.states_layer == 0
    assert env.nlu.embedding and env.sentiment.label == "neutral"


class FrozenIntent:
    """An intent model without tuned layers: takes no states."""

    states_layer = None

    def predict(self, embeddings: Any, texts: list[str], states: Any = None) -> list[Any]:
        assert states is None
        return [PREDICTION] * len(texts)


def test_nlu_returns_the_encoders_top_states_even_for_a_frozen_intent_head() -> None:
    outputs = predict_batch(RecordingEncoder(), FrozenIntent(), ["ab", "abcd"])
    assert outputs.states_layer == 8
    assert outputs.states is not None and [len(s) for s in outputs.states] == [2, 4]
    assert len(outputs.predictions) == 2 and outputs.embeddings.shape == (2, DIM)


class GreetingFirst:
    """Reads any message that starts with a greeting as one; anything else as tracking."""

    states_layer = None

    def predict(self, embeddings: Any, texts: list[str], states: Any = None) -> list[Any]:
        return [
            IntentPrediction("greeting", 0.53, [("greeting", 0.53)], False)
            if t.startswith("你好")
            else IntentPrediction("track_order", 0.97, [("track_order", 0.97)], False)
            for t in texts
        ]


def test_nlu_reads_a_request_again_without_the_greeting_in_front_of_it() -> None:
    encoder = RecordingEncoder()
    texts = ["你好，在吗？订单到哪了", "你好", "where is it"]
    outputs = predict_batch(encoder, GreetingFirst(), texts)
    assert [p.intent for p in outputs.predictions] == ["track_order", "greeting", "track_order"]
    # one more encoder pass, for the one message with something after its greeting
    assert encoder.calls[1:] == [["订单到哪了"]]
    assert len(outputs.embeddings) == 3  # the embeddings stay those of the whole messages
